// Resident memory per idle WebSocket connection: Duet's Socket.IO server (shared/socketio, example
// `seed_peer`, the seed's protocol) and the Node socket.io 4.8.4 baseline peer
// (../shared/peers/node-socketio), measured one after the other in the same run.
//
// Each client opens `/socket.io/?EIO=4&transport=websocket`, connects to `/`, sends `join_session`
// (rooms of 5), waits for `sync_code`, then stays idle, answering pings. The server's RSS
// (/proc/<pid>/status VmRSS) is read before the first connection and once all N are in and idle.
//
// Usage (raise the open-files limit first):
//   bash -c 'ulimit -n 65536; node tests/bench/idle-connections.mjs [N=10000] [duet,node]'
// Env: PEER_DIR (Node peer with node_modules; default ../shared/peers/node-socketio beside the
// repo, copied to a temp dir and `npm ci`-ed if it has none), DUET_BIN (default
// target/release/examples/seed_peer, built if missing).
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import WebSocket from '../node_modules/ws/index.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const N = Number(process.argv[2] || 10000);
const WHICH = (process.argv[3] || 'duet,node').split(',');
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

async function measure(name, start) {
  const port = await freePort();
  const child = start(port);
  await waitPort(port);
  await sleep(1500);
  const before = rssKb(child.pid);
  const clients = [];
  const t0 = Date.now();
  for (let i = 0; i < N; i += CONCURRENCY) {
    const batch = [];
    for (let j = i; j < Math.min(N, i + CONCURRENCY); j++) batch.push(openClient(port, j));
    clients.push(...(await Promise.all(batch)));
  }
  const connectMs = Date.now() - t0;
  await sleep(5000); // idle
  const after = rssKb(child.pid);
  for (const ws of clients) ws.terminate();
  child.kill('SIGKILL');
  const perConn = ((after - before) * 1024) / N;
  const r = { name, n: N, beforeKb: before, afterKb: after, perConnBytes: Math.round(perConn), connectMs };
  console.log(`${name}: RSS ${(before / 1024).toFixed(1)} MiB -> ${(after / 1024).toFixed(1)} MiB for ${N} idle websocket clients = ${(perConn / 1024).toFixed(2)} KiB per connection (connected in ${connectMs} ms)`);
  await sleep(1000);
  return r;
}

const results = {};
if (WHICH.includes('duet')) results.duet = await measure('duet-socketio (seed_peer, 1 worker)', duetServer);
if (WHICH.includes('node')) results.node = await measure('node socket.io 4.8.4 peer', nodeServer);
if (results.duet && results.node) {
  console.log(`ratio duet/node per connection: ${(results.duet.perConnBytes / results.node.perConnBytes).toFixed(2)}`);
}
console.log(JSON.stringify(results));
process.exit(0);
