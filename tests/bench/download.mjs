// What a candidate downloads, and how long they wait: the editor page and the first Python run over a
// throttled link (10 Mbit/s down and up, 40 ms latency: Chrome DevTools' Network.emulateNetworkConditions,
// which also covers the requests of the page's workers), on a first visit (empty cache) and a second
// visit (same browser profile, warm caches). docs/BENCHMARKS.md has the figures.
//
// Each run starts a duet server (throw-away SQLite) and a fresh Chromium profile (a persistent context
// in a new temporary directory, so the disk cache, Cache Storage and the V8 code cache behave as in a
// real browser), creates a Python interview, and:
//   1. first visit: opens /interview/<code>, waits until the editor is usable (window.duet: the model
//      is synced and the Ace editor no longer read-only), presses Run at once (a print), waits until the
//      Python runner reports "ready" and the run has finished, then leaves the page open until the
//      runner has kept its start-up snapshot (at most SNAPSHOT_WAIT_MS: a candidate stays on the page);
//   2. second visit: a new tab in the same profile, the same steps.
// Times are from the start of the navigation (performance.now() in the page), except "python from Run",
// from the moment Run was pressed (0 when Python was ready before: the page starts it once synced).
//
// Usage (from the repository root; needs `npm ci` in tests/):
//   node tests/bench/download.mjs [--runs 3] [--waterfall] [--unthrottled] [--json] [label=BIN,DIST ...]
// Each configuration is a duet binary and a built client; the default is this tree's target/debug/duet
// (built if missing) and frontend/dist (built if missing). Several configurations are measured
// interleaved (run 1 of each, then run 2 of each, …) so that load from other processes on the machine
// hits them alike. Before/after in one sitting:
//   node tests/bench/download.mjs --runs 5 before=/tmp/before/duet,/tmp/before/dist after=target/debug/duet,frontend/dist
// --waterfall prints every request (the page's and its workers') of the first run of each configuration:
// start and end, bytes on the wire (0 from the browser's cache), Content-Encoding, cache. --unthrottled
// measures the same without network emulation: what the machine's CPU alone needs. --json prints the
// raw results at the end.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { chromium } from '../node_modules/playwright-core/index.mjs';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
/** The link the issue asks about: a hotel connection. Bytes per second for DevTools. */
const THROUGHPUT_BYTES_PER_S = (10 * 1000 * 1000) / 8;
const LATENCY_MS = 40;
/**
 * DevTools keeps response bodies for its Network panel unless told not to: copying the runtime's 22 MB
 * into its buffers would add to the times measured.
 */
const NETWORK_ENABLE = { maxTotalBufferSize: 0, maxResourceBufferSize: 0 };
/** Generous: a run that takes longer has failed, not merely been slow. */
const STEP_TIMEOUT_MS = 120_000;
/** How long a first visit stays open after its run, at most, for the runtime to be kept (see visit()). */
const SNAPSHOT_WAIT_MS = 5000;

function parseArgs(argv) {
  const opts = { runs: 3, waterfall: false, json: false, throttle: true, configs: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--runs') opts.runs = Number(argv[++i]);
    else if (a === '--waterfall') opts.waterfall = true;
    else if (a === '--json') opts.json = true;
    else if (a === '--unthrottled') opts.throttle = false;
    else if (/^[\w.-]+=/.test(a)) {
      const [label, rest] = [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)];
      const [bin, dist] = rest.split(',');
      if (!bin || !dist) throw new Error(`configuration "${a}": expected label=BIN,DIST`);
      opts.configs.push({ label, bin: path.resolve(bin), dist: path.resolve(dist) });
    } else throw new Error(`unknown argument ${a}`);
  }
  if (!(opts.runs >= 1)) throw new Error('--runs must be at least 1');
  if (!opts.configs.length) {
    const bin = path.join(ROOT, 'target', 'debug', 'duet');
    const dist = path.join(ROOT, 'frontend', 'dist');
    if (!existsSync(bin)) run('cargo', ['build', '-p', 'duet'], ROOT);
    if (!existsSync(path.join(dist, 'editor.html'))) run('npm', ['run', '--silent', 'build'], path.join(ROOT, 'frontend'));
    opts.configs.push({ label: 'this tree', bin, dist });
  }
  for (const c of opts.configs) {
    if (!existsSync(c.bin)) throw new Error(`${c.label}: no binary at ${c.bin}`);
    if (!existsSync(path.join(c.dist, 'editor.html'))) throw new Error(`${c.label}: no built client in ${c.dist}`);
  }
  return opts;
}

function run(cmd, args, cwd) {
  const r = spawnSync(cmd, args, { cwd, stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed`);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Servers this script started: killed if it is interrupted. */
const running = new Set();
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    for (const child of running) child.kill('SIGKILL');
    process.exit(130);
  });
}

async function startDuet({ bin, dist }) {
  const port = await freePort();
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'duet-bench-'));
  const env = {
    ...process.env,
    PORT: String(port),
    HOST: '127.0.0.1',
    DUET_DATA_DIR: dataDir,
    DATABASE_URL: `sqlite://${path.join(dataDir, 'duet.sqlite3')}`,
    DUET_FRONTEND_DIR: dist,
    RUST_LOG: 'warn',
  };
  delete env.REDIS_URL;
  const child = spawn(bin, [], { cwd: ROOT, env, stdio: ['ignore', 'ignore', 'inherit'] });
  running.add(child);
  child.once('exit', () => running.delete(child));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`${bin} exited with ${child.exitCode}`);
    try {
      if ((await fetch(`${url}/healthz`)).ok) break;
    } catch {
      /* not up yet */
    }
    if (i > 300) throw new Error(`${bin} did not start`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    async stop() {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

async function createInterview(url) {
  const res = await fetch(`${url}/api/session`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ language: 'python', title: 'download bench' }),
  });
  if (res.status !== 201) throw new Error(`POST /api/session: ${res.status}`);
  const body = await res.json();
  return body.session_code ?? body.code; // `code` before the REST names followed the seed
}

/** Throttles a page (and with it the requests of its dedicated workers). */
async function throttle(cdp) {
  await cdp.send('Network.enable', NETWORK_ENABLE);
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false,
    latency: LATENCY_MS,
    downloadThroughput: THROUGHPUT_BYTES_PER_S,
    uploadThroughput: THROUGHPUT_BYTES_PER_S,
  });
}

/**
 * Records every request of a page and of its dedicated workers (Playwright reports both on the page; the
 * Python runner fetches Pyodide from a worker): start and end (ms since the epoch), bytes on the wire
 * (body as sent + headers; 0 from the browser's cache), Content-Encoding, status, cache.
 */
function record(page) {
  const pending = [];
  const describe = async (req) => {
    const timing = req.timing();
    const sizes = await req.sizes().catch(() => null);
    const res = await req.response().catch(() => null);
    const headers = res ? await res.allHeaders().catch(() => ({})) : {};
    const status = res ? res.status() : 0;
    // Playwright reports a body of minus the headers' size for a response from the cache.
    const cached = !sizes || sizes.responseBodySize < 0;
    return {
      url: req.url(),
      start: timing.startTime,
      end: timing.responseEnd >= 0 ? timing.startTime + timing.responseEnd : null,
      wire: cached ? 0 : sizes.responseBodySize + sizes.responseHeadersSize,
      encoding: headers['content-encoding'] || '',
      cache: status === 304 ? '304' : cached ? 'cache' : '',
      status,
    };
  };
  page.on('requestfinished', (req) => pending.push(describe(req)));
  page.on('requestfailed', (req) => pending.push(describe(req)));
  return () => Promise.all(pending);
}

/** One visit: navigate, wait for the editor, press Run, wait for Python. */
async function visit(context, pageUrl, { throttled }) {
  const page = await context.newPage();
  const requests = record(page);
  if (throttled) await throttle(await context.newCDPSession(page));
  await page.goto(pageUrl, { waitUntil: 'commit' });
  const editorMs = await page.waitForFunction(
    () => {
      const d = window.duet;
      return d?.model?.synced && d.editor && !d.editor.getReadOnly() ? performance.now() : false;
    },
    null,
    { timeout: STEP_TIMEOUT_MS, polling: 'raf' },
  ).then((h) => h.jsonValue());
  const py = await page.evaluate(
    (timeoutMs) =>
      new Promise((resolve, reject) => {
        const { model } = window.duet;
        const pressed = performance.now();
        let ready = null;
        let restored = null;
        const timer = setTimeout(() => reject(new Error('Python did not get ready in time')), timeoutMs);
        model.on('runtime-progress', (p) => {
          if (p.language === 'python' && p.phase === 'ready' && ready === null) {
            ready = performance.now();
            restored = !!p.restored;
          }
          if (p.phase === 'error') reject(new Error(`Python failed to load: ${p.message}`));
        });
        if (model.runners.python.ready) ready = pressed; // preloaded, and ready before Run
        model.on('running', ({ running, run }) => {
          if (running) return;
          clearTimeout(timer);
          if (run.status !== 'ok' || !run.output.includes('hello from the bench')) reject(new Error(`run ended ${run.status}: ${run.output}`));
          else resolve({ pressed, ready, restored, done: performance.now() });
        });
        window.duet.ytext.delete(0, window.duet.ytext.length);
        window.duet.ytext.insert(0, 'print("hello from the bench")\n');
        model.run();
      }),
    STEP_TIMEOUT_MS,
  );
  // A candidate stays on the page: give the Python worker the moment it needs to keep its start-up
  // snapshot (Cache Storage 'duet-python'; builds without it just wait out the limit).
  await page.evaluate(async (limitMs) => {
    const until = performance.now() + limitMs;
    while (self.caches && performance.now() < until) {
      const keys = (await caches.has('duet-python')) ? await (await caches.open('duet-python')).keys() : [];
      if (keys.some((r) => r.url.includes('/snapshot?'))) return;
      await new Promise((r) => setTimeout(r, 100));
    }
  }, SNAPSHOT_WAIT_MS);
  await page.close();
  return {
    editorMs,
    pythonReadyMs: py.ready,
    pythonFromRunMs: py.ready - py.pressed,
    restored: py.restored,
    runDoneMs: py.done,
    requests: await requests(),
  };
}

async function measure(config, throttled) {
  const server = await startDuet(config);
  const profile = mkdtempSync(path.join(os.tmpdir(), 'duet-bench-profile-'));
  try {
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
      viewport: { width: 1280, height: 800 },
    });
    try {
      // A returning user: the name is known, so no dialog waits for typing.
      await context.addInitScript(() => localStorage.setItem('duet.name', 'Bench'));
      const code = await createInterview(server.url);
      const first = await visit(context, `${server.url}/interview/${code}`, { throttled });
      const second = await visit(context, `${server.url}/interview/${code}`, { throttled });
      return { first, second };
    } finally {
      await context.close();
    }
  } finally {
    rmSync(profile, { recursive: true, force: true });
    await server.stop();
  }
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const ms = (x) => `${Math.round(x)} ms`;
const kb = (x) => `${(x / 1024).toFixed(0)} KiB`;

function totals(requests) {
  return requests.reduce((t, r) => t + r.wire, 0);
}

function printWaterfall(label, visitName, requests) {
  const doc = requests.find((r) => r.url.includes('/interview/'));
  const t0 = doc ? doc.start : Math.min(...requests.map((r) => r.start));
  console.log(`\n${label}, ${visitName} visit: every request (ms from the page's request)`);
  console.log('   start      end    on wire  enc   cache  url');
  const pad = (x, n) => String(x).padStart(n);
  for (const r of [...requests].sort((a, b) => a.start - b.start)) {
    const u = new URL(r.url);
    const name = u.pathname + (u.pathname.startsWith('/socket.io') ? '' : u.search);
    const end = r.end === null ? '-' : Math.round(r.end - t0);
    console.log(`${pad(Math.round(r.start - t0), 8)} ${pad(end, 8)} ${pad(kb(r.wire), 10)}  ${r.encoding.padEnd(4)}  ${r.cache.padEnd(5)}  ${name}`);
  }
  console.log(`total on the wire ${kb(totals(requests))}`);
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  console.log(
    opts.throttle
      ? `throttled link: ${(THROUGHPUT_BYTES_PER_S * 8) / 1e6} Mbit/s down and up, ${LATENCY_MS} ms latency; ${opts.runs} run(s) per configuration`
      : `no throttling (loopback): what this machine's CPU needs; ${opts.runs} run(s) per configuration`,
  );
  console.log(`load average at start: ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`);
  const results = Object.fromEntries(opts.configs.map((c) => [c.label, []]));
  for (let i = 0; i < opts.runs; i++) {
    for (const c of opts.configs) {
      const r = await measure(c, opts.throttle);
      results[c.label].push(r);
      console.log(
        `${c.label} run ${i + 1}: first visit editor ${ms(r.first.editorMs)}, python ready ${ms(r.first.pythonReadyMs)} ` +
          `(${ms(r.first.pythonFromRunMs)} from Run), ${kb(totals(r.first.requests))} on the wire; ` +
          `second visit editor ${ms(r.second.editorMs)}, python ready ${ms(r.second.pythonReadyMs)} (${ms(r.second.pythonFromRunMs)} from Run` +
          `${r.second.restored ? ', snapshot restored' : ''}), ` +
          `${kb(totals(r.second.requests))} on the wire`,
      );
      if (opts.waterfall && i === 0) {
        printWaterfall(c.label, 'first', r.first.requests);
        printWaterfall(c.label, 'second', r.second.requests);
      }
    }
  }
  console.log('\nmedians (ms)                 | editor usable | python ready | python from Run | on the wire');
  for (const c of opts.configs) {
    for (const v of ['first', 'second']) {
      const rs = results[c.label].map((r) => r[v]);
      console.log(
        `${`${c.label}, ${v} visit`.padEnd(29)}| ${ms(median(rs.map((r) => r.editorMs))).padStart(13)} | ${ms(median(rs.map((r) => r.pythonReadyMs))).padStart(12)} | ${ms(median(rs.map((r) => r.pythonFromRunMs))).padStart(15)} | ${kb(median(rs.map((r) => totals(r.requests)))).padStart(11)}`,
      );
    }
  }
  console.log(`load average at end: ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`);
  if (opts.json) console.log(JSON.stringify(results, null, 2));
}

await main();
