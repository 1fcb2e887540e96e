// The review page with a long interview: how long it takes to open, and how smoothly it scrubs, in
// headless Chromium. docs/BENCHMARKS.md has the figures.
//
// The interview: a synthetic two-hour session of 30,000 code updates (two authors: the candidate types
// most, the interviewer now and then; single keystrokes, backspaces, cursor jumps, a few multi-character
// completions), with pastes, tab switches and runs — stored through the real all-in-one
// server (target/debug/duet, throw-away SQLite): two socket.io clients join with their tokens and send
// the updates as the browser does (y-protocols update messages, several per `yjs` emit, each burst
// acknowledged before the other author's next one), `activity` and `execute_code` between bursts.
// Sending takes a minute, not two hours, so the stored times are then spread over two hours in the
// bench's own database: bursts of keystrokes 100–400 ms apart, pauses of 2 s to 2 min between them
// (the server stopped meanwhile; the history's append-only trigger is lifted for that one UPDATE and put
// back). Events and runs are moved with the updates around them.
//
// Measured, over --runs fresh browser contexts (default 3), each run twice — `live` (the record and
// the history from the server) and `cached` (the same bodies answered from memory by the browser
// driver: the page's own cost) — plus the server's two answers timed from Node:
//   open:   from the start of the navigation to the page ready (record and history fetched, replay
//           built, editor and timeline drawn), with the script load, the fetches, the replay build
//           and the drawing separately;
//   scrub:  frames per second while the scrubber is moved every animation frame for 3 s — a steady
//           drag across the whole interview, and random jumps (worst case: no two seeks near) — and
//           the time one seek takes (median, p95, max) in that loop.
//
// Usage (from the repository root; needs `npm ci` in tests/ and in frontend/):
//   node tests/bench/replay.mjs [--updates 30000] [--runs 3] [--keep]
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { io } from 'socket.io-client';
import * as Y from 'yjs';
import * as encoding from 'lib0/encoding';
import * as syncProtocol from 'y-protocols/sync';
import { chromium } from 'playwright-core';
import { DuetServer } from '../js/browser/duet-server.js';
import { buildFrontend } from '../js/browser/frontend.js';

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const UPDATES = opt('updates', 30000);
const RUNS = opt('runs', 3);
const TWO_HOURS_MS = 2 * 60 * 60 * 1000;
/** y-protocols update messages per `yjs` emit (the hub stores each as its own update). */
const PER_EMIT = 25;
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

/** A deterministic generator, so every run stores the same interview. */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The interview's edits: bursts of one author's keystrokes, `[{author: 0|1, updates: [Uint8Array],
 * times: [ms from the start]}]`, and the activity between them. The two documents see each other's
 * edits at once (live collaboration).
 */
function generate(total) {
  const r = rng(15);
  const docs = [new Y.Doc(), new Y.Doc()];
  const out = [[], []];
  docs.forEach((d, i) => {
    d.on('update', (u, origin) => {
      if (origin === 'peer') return;
      out[i].push(u);
      Y.applyUpdate(docs[1 - i], u, 'peer');
    });
  });
  const WORD = 'abcdefghijklmnopqrstuvwxyz  ()=.:,_';
  const bursts = [];
  let made = 0;
  let t = 0;
  const cursors = [0, 0];
  while (made < total) {
    const author = r() < 0.85 ? 0 : 1;
    const doc = docs[author];
    const text = doc.getText('code');
    const n = Math.min(total - made, 20 + Math.floor(r() * 280));
    const burst = { author, updates: [], times: [], activity: [] };
    t += 2000 + Math.floor(r() ** 3 * 118000); // a pause before the burst: mostly short, some long
    if (r() < 0.05) burst.activity.push({ kind: 'blur' }, { kind: 'focus' });
    let cursor = Math.min(cursors[author], text.length);
    if (r() < 0.3) {
      // Somewhere else in the file: the start of a random line.
      const s = text.toString();
      const lines = [0];
      for (let i = 0; i < s.length; i++) if (s[i] === '\n') lines.push(i + 1);
      cursor = lines[Math.floor(r() * lines.length)];
    }
    for (let k = 0; k < n; k++) {
      const before = out[author].length;
      const roll = r();
      if (roll < 0.3 && cursor > 0) {
        text.delete(cursor - 1, 1);
        cursor--;
      } else if (roll < 0.32) {
        const s = 'return ' + 'x'.repeat(3 + Math.floor(r() * 8));
        text.insert(cursor, s);
        cursor += s.length;
      } else {
        const c = r() < 0.06 ? '\n' : WORD[Math.floor(r() * WORD.length)];
        text.insert(cursor, c);
        cursor++;
      }
      if (out[author].length > before) {
        burst.updates.push(out[author].at(-1));
        t += 100 + Math.floor(r() * 300);
        burst.times.push(t);
      }
    }
    cursors[author] = cursor;
    if (author === 0 && r() < 0.03) burst.activity.push({ kind: 'paste', size: 10 + Math.floor(r() * 400) });
    if (author === 0 && r() < 0.04) burst.run = true;
    made += burst.updates.length;
    bursts.push(burst);
  }
  // Scaled to exactly two hours.
  const scale = TWO_HOURS_MS / t;
  for (const b of bursts) b.times = b.times.map((x) => Math.round(x * scale));
  return { bursts, finalText: docs[0].getText('code').toString() };
}

function updateMessage(u) {
  const e = encoding.createEncoder();
  encoding.writeVarUint(e, 0);
  syncProtocol.writeUpdate(e, u);
  return encoding.toUint8Array(e);
}

function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function connect(base, code, token, name) {
  return new Promise((resolve, reject) => {
    const s = io(base, { transports: ['websocket'], forceNew: true, query: { session: code }, reconnection: false });
    s.on('connect_error', reject);
    s.on('connect', () => {
      s.timeout(10000).emit('join_session', { session_code: code, name, yjs: true, token }, (err, res) => {
        if (err || !res?.ok) reject(new Error(`join: ${err?.message ?? JSON.stringify(res)}`));
        else resolve(s);
      });
    });
  });
}

const ack = (s, event, payload) =>
  new Promise((resolve, reject) =>
    s.timeout(30000).emit(event, payload, (err, res) => (err ? reject(err) : res?.ok === false ? reject(new Error(`${event}: ${JSON.stringify(res.error)}`)) : resolve(res))),
  );

async function store(base, interview, history) {
  const { session_code: code, interviewer_token: link } = interview;
  const joined = await (await fetch(`${base}/api/session/${code}/join`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'Cara' }) })).json();
  const sockets = [await connect(base, code, joined.token, 'Cara'), await connect(base, code, link, 'Ivy')];
  let sent = 0;
  const started = Date.now();
  for (const b of history.bursts) {
    const s = sockets[b.author];
    for (const a of b.activity) await ack(s, 'activity', a);
    for (let i = 0; i < b.updates.length; i += PER_EMIT) {
      const chunk = b.updates.slice(i, i + PER_EMIT).map(updateMessage);
      // Paced below the hub's per-connection limit for document messages (100/s).
      await Promise.all([ack(s, 'yjs', concat(chunk)), new Promise((r) => setTimeout(r, 12))]);
    }
    if (b.run) await ack(s, 'execute_code', { language: 'javascript', output: `ran after ${sent} edits\n`, status: 'ok', duration_ms: 12 });
    sent += b.updates.length;
    if (sent % 5000 < b.updates.length) process.stdout.write(`  stored ${sent} updates (${((Date.now() - started) / 1000).toFixed(0)} s)\n`);
  }
  await ack(sockets[1], 'end_interview', {});
  for (const s of sockets) s.disconnect();
}

/** Spreads the stored times over the synthetic two hours (see the header). */
function respread(dbFile, sessionId, history) {
  const times = history.bursts.flatMap((b) => b.times);
  const file = path.join(path.dirname(dbFile), 'times.json');
  writeFileSync(file, JSON.stringify(times));
  const py = `
import json, sqlite3, sys, bisect, time
db = sqlite3.connect(sys.argv[1]); sid = bytes.fromhex(sys.argv[2].replace('-', ''))
times = json.load(open(sys.argv[3]))
rows = db.execute("SELECT seq, created_at FROM doc_updates WHERE session_id = ? AND doc = 0 ORDER BY seq", (sid,)).fetchall()
assert len(rows) == len(times), (len(rows), len(times))
base = int(time.time() * 1e6) - 3 * 3600 * 10**6
synth = [base + t * 1000 for t in times]
real = [r[1] for r in rows]
trig = db.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'doc_updates_no_update'").fetchone()[0]
db.execute("DROP TRIGGER doc_updates_no_update")
db.executemany("UPDATE doc_updates SET created_at = ? WHERE seq = ?", [(s, r[0]) for s, r in zip(synth, rows)])
db.execute(trig)
def move(t):
    i = bisect.bisect_left(real, t)
    if i == 0: return synth[0] - (real[0] - t) // 100
    if i >= len(real): return synth[-1] + (t - real[-1]) // 100
    a, b = real[i - 1], real[i]
    f = (t - a) / (b - a) if b > a else 0
    return int(synth[i - 1] + f * (synth[i] - synth[i - 1]))
for table, col, key in (("events", "at", "seq"), ("runs", "created_at", "id")):
    for k, t in db.execute(f"SELECT {key}, {col} FROM {table} WHERE session_id = ?", (sid,)).fetchall():
        db.execute(f"UPDATE {table} SET {col} = ? WHERE {key} = ?", (move(t), k))
db.commit()
print(len(rows))
`;
  const r = spawnSync('python3', ['-c', py, dbFile, sessionId, file], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`respreading the times failed: ${r.stderr}`);
  return Number(r.stdout.trim());
}

const f = (x) => (typeof x === 'number' && Number.isFinite(x) ? x.toFixed(0) : '?');

const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};

async function measure(browser, url, cached = null) {
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const page = await context.newPage();
  if (cached) {
    // The record and the history answered from memory: the page's own cost, without the server's.
    await page.route('**/api/session/*/record', (route) => route.fulfill({ status: 200, contentType: 'application/json', body: cached.record }));
    await page.route('**/api/session/*/history*', (route) => route.fulfill({ status: 200, contentType: 'application/json', body: cached.history }));
  }
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(url);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 60000 });
  const timings = await page.evaluate(() => {
    const res = (re) => performance.getEntriesByType('resource').find((e) => re.test(e.name));
    const span = (e) => (e ? { start: e.startTime, end: e.responseEnd, bytes: e.encodedBodySize } : null);
    // script: the page's bundle (static/review-<hash>.js), not the small review-load script before it.
    return { ...window.duetReview.timings, record: span(res(/\/record$/)), history: span(res(/\/history\?/)), script: span(res(/\/static\/review-(?!load-)[^/]*\.js$/)) };
  });
  const scrub = {};
  for (const mode of ['sweep', 'random']) {
    scrub[mode] = await page.evaluate(
      ([m, durationMs]) =>
        new Promise((resolve) => {
          const s = document.getElementById('scrubber');
          const max = Number(s.max);
          const seeks = [];
          let frames = 0;
          let t0 = null;
          const step = (now) => {
            t0 ??= now;
            if (now - t0 >= durationMs) {
              resolve({ fps: frames / ((now - t0) / 1000), seeks });
              return;
            }
            const v = m === 'sweep' ? ((now - t0) / durationMs) * max : Math.random() * max;
            const a = performance.now();
            s.value = String(Math.round(v));
            s.dispatchEvent(new Event('input'));
            seeks.push(performance.now() - a);
            frames++;
            requestAnimationFrame(step);
          };
          requestAnimationFrame(step);
        }),
      [mode, 3000],
    );
  }
  const info = await page.evaluate(() => ({ updates: window.duetReview.replay.length, chars: window.duetReview.editor.getValue().length, markers: document.querySelectorAll('.marker').length }));
  await context.close();
  return { timings, scrub, info, errors };
}

async function main() {
  buildFrontend();
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'duet-replay-bench-'));
  const server = await new DuetServer({ dataDir }).start();
  try {
    const history = generate(UPDATES);
    console.log(`generated ${history.bursts.reduce((n, b) => n + b.updates.length, 0)} updates in ${history.bursts.length} bursts; final text ${history.finalText.length} characters`);
    const created = await (await fetch(`${server.url}/api/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ language: 'python', title: 'Replay benchmark' }) })).json();
    const t0 = Date.now();
    await store(server.url, created, history);
    console.log(`stored through duet in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    await server.stop('SIGTERM');
    const n = respread(path.join(dataDir, 'duet.sqlite3'), created.id, history);
    console.log(`spread ${n} stored updates over two hours`);
    await server.start();
    // PreloadTopChromeWebUI off: otherwise each new context's window preloads Chromium's own omnibox
    // popup (a WebUI renderer: ~0.8 s of CPU) while the page opens — not the page's cost, and on two
    // cores a large part of what was measured.
    const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-features=PreloadTopChromeWebUI'] });
    const url = `${server.url}/review/${created.session_code}#token=${created.interviewer_token}`;
    // The server's part alone, from Node (the record and the history of 30,000 updates).
    const auth = { headers: { authorization: `Bearer ${created.interviewer_token}` } };
    const fetchTimed = async (u) => {
      const a = performance.now();
      const body = await (await fetch(u, auth)).text();
      return { body, ms: performance.now() - a };
    };
    const rec = await fetchTimed(`${server.url}/api/session/${created.session_code}/record`);
    const hist = await fetchTimed(`${server.url}/api/session/${created.session_code}/history?doc=code`);
    console.log(`server (${process.env.DUET_BIN ? process.env.DUET_BIN : 'target/debug/duet'}): /record ${rec.ms.toFixed(0)} ms (${(rec.body.length / 1e6).toFixed(2)} MB), /history ${hist.ms.toFixed(0)} ms (${(hist.body.length / 1e6).toFixed(2)} MB)`);
    const cached = { record: rec.body, history: hist.body };
    const results = [];
    for (let i = 0; i < RUNS * 2; i++) {
      const mode = i % 2 === 0 ? 'live' : 'cached';
      const r = await measure(browser, url, mode === 'cached' ? cached : null);
      results.push(r);
      process.stdout.write(`[${mode}] `);
      const seeks = [...r.scrub.sweep.seeks, ...r.scrub.random.seeks];
      console.log(
        `run ${Math.floor(i / 2) + 1}: open ${f(r.timings.ready)} ms (requests started at ${f(r.timings.requested)}, script loaded at ${f(r.timings.script?.end)}, /history ${f(r.timings.history?.start)}–${f(r.timings.history?.end)}, /record until ${f(r.timings.record?.end)}, answers parsed at ${f(r.timings.fetched)}, replay built in ${f(r.timings.built - r.timings.fetched)}, drawn in ${f(r.timings.ready - r.timings.built)}) · ` +
          `scrub ${r.scrub.sweep.fps.toFixed(1)} fps dragging, ${r.scrub.random.fps.toFixed(1)} fps random jumps · ` +
          `seek median ${quantile(seeks, 0.5).toFixed(2)} ms, p95 ${quantile(seeks, 0.95).toFixed(2)}, max ${Math.max(...seeks).toFixed(2)} · ` +
          `${r.info.updates} updates, ${r.info.chars} chars, ${r.info.markers} markers${r.errors.length ? ` · errors: ${r.errors.join('; ')}` : ''}`,
      );
    }
    await browser.close();
  } finally {
    await server.stop('SIGKILL');
    if (!args.includes('--keep')) spawnSync('rm', ['-rf', dataDir]);
    else console.log(`kept ${dataDir}`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
