// Resident memory per idle WebSocket connection, measured one server after the other in the same run:
// - `app`: the real `duet` binary (release, embedded SQLite in a temp dir, in-process bus) with
//   interviews of 5 joined as the browser joins them: `POST /api/session`, each participant's token
//   from `POST /api/session/<code>/join` (the first of each interview with the interviewer link's
//   token, so an interviewer), then Socket.IO `join_session {session_code, name, token, yjs: true}`,
//   the y-protocols sync handshake and an awareness state (tests/js/collab/client.mjs); a client counts
//   once its handshake is acked. Memory per participant = everything: the loaded interview's share
//   (a fifth of it) and the connection.
// - `duet`: duet-socketio's `seed_peer` example (the seed's protocol, no interviews, no storage);
// - `node`: the Node socket.io 4.8.4 baseline peer (../shared/peers/node-socketio).
// `duet`/`node` clients open `/socket.io/?EIO=4&transport=websocket`, connect to `/`, send the seed's
// `join_session` (rooms of 5) and wait for `sync_code`. Then every client stays idle (answering
// pings) for 5 s. The server's RSS (/proc/<pid>/status VmRSS) is read before the first request and
// once all N are in and idle.
//
// Usage (raise the open-files limit first):
//   bash -c 'ulimit -n 65536; node tests/bench/idle-connections.mjs [N=10000] [app,duet,node]'
// Env: PEER_DIR (Node peer with node_modules; default ../shared/peers/node-socketio beside the
// repo, copied to a temp dir and `npm ci`-ed if it has none), DUET_BIN (default
// target/release/examples/seed_peer, built if missing), APP_BIN (default target/release/duet,
// built if missing), APP_WRAP (a command the app runs under, split on spaces, e.g. `heaptrack -o
// /tmp/duet`; RSS is then read from the `duet` process under it, which is killed once measured, so
// what heaptrack reports as leaked is the idle server's heap), APP_ENV (extra `K=V` pairs for
// the app, space-separated, e.g. `MIMALLOC_PURGE_DELAY=0`), IDLE_MS (default 5000).
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import WebSocket from '../node_modules/ws/index.js';
import { CollabClient, until } from '../js/collab/client.mjs';
import { createInterview, joinRest } from '../js/collab/interview.mjs';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const N = Number(process.argv[2] || 10000);
const WHICH = (process.argv[3] || 'duet,node').split(',');
const IDLE_MS = Number(process.env.IDLE_MS || 5000);
const CONCURRENCY = 200;
const ROOM_SIZE = 5;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

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

/** The process to measure: `pid` itself, or the first descendant named `comm` (under APP_WRAP). */
function findProcess(pid, comm) {
  const parent = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parent.set(Number(d), { name, ppid });
    } catch {}
  }
  const under = (p) => {
    for (let q = p; q > 1; q = parent.get(q)?.ppid ?? 0) if (q === pid) return true;
    return false;
  };
  for (const [p, { name }] of parent) if (name === comm && under(p)) return p;
  return null;
}

function rssKb(pid) {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/);
  return Number(m[1]);
}

async function waitPort(port) {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`port ${port} never opened`);
}

function duetServer(port) {
  const bin = process.env.DUET_BIN || path.join(ROOT, 'target', 'release', 'examples', 'seed_peer');
  if (!existsSync(bin)) {
    const r = spawnSync('cargo', ['build', '--release', '-p', 'duet-socketio', '--example', 'seed_peer'], { cwd: ROOT, stdio: 'inherit' });
    if (r.status !== 0) throw new Error('build failed');
  }
  return spawn(bin, ['--port', String(port), '--workers', '1'], { stdio: ['ignore', 'ignore', 'inherit'] });
}

function appServer(port) {
  const bin = process.env.APP_BIN || path.join(ROOT, 'target', 'release', 'duet');
  if (!existsSync(bin)) {
    const r = spawnSync('cargo', ['build', '--release', '-p', 'duet'], { cwd: ROOT, stdio: 'inherit' });
    if (r.status !== 0) throw new Error('build failed');
  }
  const data = mkdtempSync(path.join(os.tmpdir(), 'duet-idle-'));
  const env = {
    ...process.env,
    PORT: String(port),
    HOST: '127.0.0.1',
    DUET_DATA_DIR: data,
    DUET_FRONTEND_DIR: path.join(data, 'no-frontend'),
    DUET_LOG_LEVEL: 'warn',
    // One client IP makes every request here: no per-IP limits.
    DUET_API__CREATES_PER_MINUTE: '0',
    DUET_API__JOINS_PER_MINUTE: '0',
    DUET_HTTP__MAX_CONNECTIONS: String(N + 1000),
  };
  for (const kv of (process.env.APP_ENV || '').split(' ').filter(Boolean)) {
    const i = kv.indexOf('=');
    env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  const wrap = (process.env.APP_WRAP || '').split(' ').filter(Boolean);
  const child = wrap.length
    ? spawn(wrap[0], [...wrap.slice(1), bin], { env, stdio: ['ignore', 'ignore', 'inherit'] })
    : spawn(bin, [], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  child.measured = () => (wrap.length ? findProcess(child.pid, path.basename(bin).slice(0, 15)) : child.pid);
  child.cleanup = () => rmSync(data, { recursive: true, force: true });
  return child;
}

function nodeServer(port) {
  let dir = process.env.PEER_DIR || path.resolve(ROOT, '..', 'shared', 'peers', 'node-socketio');
  if (!existsSync(path.join(dir, 'node_modules'))) {
    const tmp = mkdtempSync(path.join(os.tmpdir(), 'node-peer-'));
    cpSync(dir, tmp, { recursive: true });
    const r = spawnSync('npm', ['ci', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: tmp, stdio: 'inherit' });
    if (r.status !== 0) throw new Error('npm ci failed for the Node peer');
    dir = tmp;
  }
  return spawn(process.execPath, ['server.js'], { cwd: dir, env: { ...process.env, PORT: String(port) }, stdio: ['ignore', 'ignore', 'inherit'] });
}

function openClient(port, i) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`, { perMessageDeflate: false });
    const timer = setTimeout(() => reject(new Error('client timeout')), 20000);
    ws.on('error', reject);
    ws.on('message', (raw) => {
      const m = raw.toString();
      if (m === '2') ws.send('3');
      else if (m.startsWith('0')) ws.send('40');
      else if (m.startsWith('40')) ws.send(`42${JSON.stringify(['join_session', { session_code: `room-${Math.floor(i / ROOM_SIZE)}`, name: `u${i}` }])}`);
      else if (m.startsWith('42["sync_code"')) { clearTimeout(timer); resolve(ws); }
    });
  });
}

/** A REST call, tried again on a network error (a reused keep-alive connection the server closed). */
async function retried(call) {
  for (let i = 0; ; i++) {
    try {
      return await call();
    } catch (e) {
      if (i >= 3 || !(e instanceof TypeError)) throw e; // fetch's network errors are TypeErrors
      await sleep(100);
    }
  }
}

/** One participant of an interview, joined as the browser joins: token over REST, then Socket.IO. */
async function openAppClient(url, iv, i) {
  const first = i % ROOM_SIZE === 0;
  const name = `${first ? 'Interviewer' : 'Candidate'} ${i}`;
  const { token } = await retried(() => joinRest(url, iv.session_code, { name, bearer: first ? iv.interviewer_token : undefined }));
  const c = new CollabClient(url, { code: iv.session_code, name, token });
  if (!(await until(() => c.saved, 30000, 10))) throw new Error(`client ${i} not synced: ${JSON.stringify(c.errors)}`);
  return c;
}

/** `app`: interviews of 5 over REST, then their participants; resolves with close functions. */
async function openApp(port) {
  const url = `http://127.0.0.1:${port}`;
  const interviews = [];
  const rooms = Math.ceil(N / ROOM_SIZE);
  for (let i = 0; i < rooms; i += 20) {
    const batch = [];
    for (let j = i; j < Math.min(rooms, i + 20); j++) batch.push(retried(() => createInterview(url, { title: `bench ${j}` })));
    interviews.push(...(await Promise.all(batch)));
  }
  const clients = [];
  for (let i = 0; i < N; i += CONCURRENCY) {
    const batch = [];
    for (let j = i; j < Math.min(N, i + CONCURRENCY); j++) batch.push(openAppClient(url, interviews[Math.floor(j / ROOM_SIZE)], j));
    clients.push(...(await Promise.all(batch)));
  }
  return clients.map((c) => () => c.close());
}

async function openRaw(port) {
  const clients = [];
  for (let i = 0; i < N; i += CONCURRENCY) {
    const batch = [];
    for (let j = i; j < Math.min(N, i + CONCURRENCY); j++) batch.push(openClient(port, j));
    clients.push(...(await Promise.all(batch)));
  }
  return clients.map((ws) => () => ws.terminate());
}

async function measure(name, start, open = openRaw) {
  const port = await freePort();
  const child = start(port);
  await waitPort(port);
  await sleep(1500);
  const pid = child.measured ? child.measured() : child.pid;
  const before = rssKb(pid);
  const t0 = Date.now();
  let closers;
  try {
    closers = await open(port);
  } catch (e) {
    process.kill(pid, 'SIGKILL'); // not left running when the clients fail
    child.cleanup?.();
    throw e;
  }
  const connectMs = Date.now() - t0;
  await sleep(IDLE_MS); // idle
  const after = rssKb(pid);
  // Killed where it stands, before the clients close (closing, a client sends its awareness
  // goodbye, a binary packet the server would be holding half-read): under heaptrack (APP_WRAP)
  // what it reports as leaked is then the heap of the idle server.
  process.kill(pid, 'SIGKILL');
  if (process.env.APP_WRAP) await new Promise((r) => child.once('exit', r));
  else child.kill('SIGKILL');
  for (const close of closers) close();
  child.cleanup?.();
  const perConn = ((after - before) * 1024) / N;
  const r = { name, n: N, beforeKb: before, afterKb: after, perConnBytes: Math.round(perConn), connectMs };
  console.log(`${name}: RSS ${(before / 1024).toFixed(1)} MiB -> ${(after / 1024).toFixed(1)} MiB for ${N} idle websocket clients = ${(perConn / 1024).toFixed(2)} KiB per connection (connected in ${connectMs} ms)`);
  await sleep(1000);
  return r;
}

const results = {};
if (WHICH.includes('app')) results.app = await measure('duet (the app: interviews of 5, SQLite, 1 process)', appServer, openApp);
if (WHICH.includes('duet')) results.duet = await measure('duet-socketio (seed_peer, 1 worker)', duetServer);
if (WHICH.includes('node')) results.node = await measure('node socket.io 4.8.4 peer', nodeServer);
for (const k of ['app', 'duet']) {
  if (results[k] && results.node) {
    console.log(`ratio ${k}/node per connection: ${(results[k].perConnBytes / results.node.perConnBytes).toFixed(2)}`);
  }
}
console.log(JSON.stringify(results));
process.exit(0);
