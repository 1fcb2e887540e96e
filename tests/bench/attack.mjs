// Another interview's edit latency while one interview on the same hub is attacked (issue: the hub
// under hostile input). A duet server (DUET_BIN, default target/debug/duet; use a release build for
// figures), `--others` interviews of two typists each (one edit every 50 ms per typist; each edit
// timed to its ack and to its arrival at the other typist of its interview), measured twice in one
// run: quiet, then while an attacker floods one more interview with the costliest updates there are
// — thousands of concurrent one-character inserts at one place, then as many again under higher
// client ids (each compared with every one before: YATA's worst case), repeated for the whole
// window, and 500 KB whole-text `code_change`s from a seed client. The attacker runs in a worker
// thread with its updates made before the measurement, so the timing thread is not held by it.
// Prints p50/p99/max of the deliveries and of the acked edits in both phases, and the ratios.
//
// Usage: node tests/bench/attack.mjs [--seconds 10] [--others 10]
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { readFileSync } from 'node:fs';
import { io } from 'socket.io-client';
import { crafted, updateMessage } from '../js/collab/crafted.mjs';
import { DuetServer } from '../js/browser/duet-server.js';
import { CollabClient, sleep, until } from '../js/collab/client.mjs';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const SECONDS = arg('seconds', 10);
const OTHERS = arg('others', 10);

async function create(url) {
  const r = await fetch(`${url}/api/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"language":"python"}' });
  return (await r.json()).session_code;
}

/** The server's CPU time so far (user + system, all threads), in seconds. */
function cpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return NaN;
  }
}

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] : NaN;
};

/**
 * Typists in every other interview for `seconds`: the latency of each acked edit (typed → the
 * typist's ack: stored) and of each delivery (typed → the other typist's document has it), in ms.
 * In a pair, the first types `a`s and the second `b`s, so each sees the other's arrive by counting.
 */
async function typeFor(pairs, seconds) {
  const acked = [];
  const delivered = [];
  let stop = false;
  const watchers = pairs.map(([a, b]) =>
    [[a, b, 'a'], [b, a, 'b']].map(([from, to, ch]) => {
      const sent = [];
      let seen = [...to.text.toString()].filter((c) => c === ch).length;
      const onUpdate = () => {
        const now = performance.now();
        const n = [...to.text.toString()].filter((c) => c === ch).length;
        for (; seen < n; seen++) if (sent[seen] !== undefined) delivered.push(now - sent[seen]);
      };
      to.doc.on('update', onUpdate);
      const base = [...from.text.toString()].filter((c) => c === ch).length;
      return { from, ch, sent, base, typed: 0, off: () => to.doc.off('update', onUpdate) };
    }),
  ).flat();
  const loops = watchers.map(async (w, k) => {
    await sleep((k * 7) % 50);
    while (!stop) {
      const t0 = performance.now();
      const n = w.from.acked.length;
      w.sent[w.base + w.typed++] = t0;
      w.from.text.insert(w.from.text.length, w.ch);
      const ok = await until(() => w.from.acked.length > n, 10000, 1);
      if (ok) acked.push(performance.now() - t0);
      await sleep(50);
    }
  });
  await sleep(seconds * 1000);
  stop = true;
  await Promise.all(loops);
  await sleep(500); // the last deliveries
  for (const w of watchers) w.off();
  return { acked, delivered };
}

/** The attacker (worker thread): waits for 'go', attacks until 'stop', answers its refusal counts. */
async function attack({ url, target, seedCode, seconds }) {
  const mallory = io(url, { transports: ['websocket'], forceNew: true, reconnection: false });
  await mallory.timeout(5000).emitWithAck('join_session', { session_code: target, name: 'M', yjs: true });
  const seed = io(url, { transports: ['websocket'], forceNew: true, reconnection: false });
  await seed.timeout(5000).emitWithAck('join_session', { session_code: seedCode, name: 'S' });
  // Enough rounds for the whole phase (the hub answers about 15 a second), each under new client ids.
  const rounds = Array.from({ length: Math.ceil(seconds * 20) }, (_, r) => {
    const base = 1_000_000 + r * 200_000;
    return [0, 100_000].map((off, k) =>
      updateMessage(crafted(Array.from({ length: 5000 }, (_, i) => [base + off + i, 0, k ? 'y' : 'x']))),
    );
  });
  const big = 'x'.repeat(500 * 1024);
  const refusals = {};
  const count = (what, r) => {
    const k = `${what}: ${r?.ok ? 'ok' : r?.error?.code ?? 'no answer'}`;
    refusals[k] = (refusals[k] ?? 0) + 1;
  };
  let attacking = true;
  parentPort.postMessage('ready');
  await new Promise((resolve) => parentPort.once('message', resolve)); // 'go'
  parentPort.once('message', () => (attacking = false)); // 'stop'
  const crafting = (async () => {
    for (let r = 0; attacking; r = (r + 1) % rounds.length) {
      for (const msg of rounds[r]) count('crafted', await mallory.timeout(30000).emitWithAck('yjs', msg).catch(() => null));
    }
  })();
  const flood = (async () => {
    let n = 0;
    while (attacking) {
      count('500 KB code_change', await seed.timeout(30000).emitWithAck('code_change', { code: `${n++}${big}` }).catch(() => null));
      await sleep(50);
    }
  })();
  await Promise.all([crafting, flood]);
  mallory.close();
  seed.close();
  parentPort.postMessage(refusals);
}

if (!isMainThread) {
  await attack(workerData);
  process.exit(0);
}

const server = await new DuetServer().start();
try {
  const pairs = [];
  for (let i = 0; i < OTHERS; i++) {
    const code = await create(server.url);
    const a = new CollabClient(server.url, { code, name: `A${i}` });
    const b = new CollabClient(server.url, { code, name: `B${i}` });
    await until(() => a.synced && b.synced, 5000);
    pairs.push([a, b]);
  }
  // The attacker runs in a worker thread with its updates made beforehand, so that making and
  // sending them does not hold this thread's event loop (which times the other interviews' edits).
  const attacker = new Worker(new URL(import.meta.url), {
    workerData: { url: server.url, target: await create(server.url), seedCode: await create(server.url), seconds: SECONDS },
  });
  await new Promise((resolve, reject) => {
    attacker.once('message', resolve);
    attacker.once('error', reject);
  });
  const pid = server.child.pid;
  let cpu0 = cpuSeconds(pid);
  const quiet = await typeFor(pairs, SECONDS);
  const quietCpu = cpuSeconds(pid) - cpu0;

  cpu0 = cpuSeconds(pid);
  attacker.postMessage('go');
  const attacked = await typeFor(pairs, SECONDS);
  const attackedCpu = cpuSeconds(pid) - cpu0;
  attacker.postMessage('stop');
  const refusals = await new Promise((resolve) => attacker.once('message', resolve));

  const row = (name, xs) =>
    `| ${name} | ${xs.length} | ${pct(xs, 50).toFixed(1)} | ${pct(xs, 99).toFixed(1)} | ${Math.max(...xs).toFixed(1)} |`;
  console.log(`\nother interviews' edits (${OTHERS} interviews × 2 typists, one edit per 50 ms each, ${SECONDS} s per phase)`);
  console.log('| phase | edits | p50 ms | p99 ms | max ms |');
  console.log('|---|---|---|---|---|');
  console.log(row('quiet: delivered to the other typist', quiet.delivered));
  console.log(row('attacked: delivered to the other typist', attacked.delivered));
  console.log(row('quiet: acked (stored)', quiet.acked));
  console.log(row('attacked: acked (stored)', attacked.acked));
  const window = SECONDS + 0.5;
  console.log(`server CPU (all threads): quiet ${((100 * quietCpu) / window).toFixed(0)} %, attacked ${((100 * attackedCpu) / window).toFixed(0)} % of one core`);
  const ratio = (k) => (pct(attacked[k], 99) / pct(quiet[k], 99)).toFixed(2);
  console.log(`p99 attacked / quiet: delivered ${ratio('delivered')}, acked ${ratio('acked')}; attacker's answers: ${JSON.stringify(refusals)}`);
  for (const c of pairs.flat()) c.close();
} finally {
  await server.close();
}
