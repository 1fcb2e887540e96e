// Starts the all-in-one server (target/debug/duet) for end-to-end browser tests: a free port, a
// throw-away SQLite database, the freshly built frontend/dist. Builds the binary with
// `cargo build -p duet` when it is missing (DUET_BIN overrides the path).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { DIST, ROOT } from './frontend.js';

export const DUET_BIN = process.env.DUET_BIN || path.join(ROOT, 'target', 'debug', 'duet');

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export function ensureDuetBinary() {
  if (existsSync(DUET_BIN)) return DUET_BIN;
  const r = spawnSync('cargo', ['build', '-p', 'duet'], { cwd: ROOT, stdio: 'inherit', timeout: 30 * 60 * 1000 });
  if (r.status !== 0 || !existsSync(DUET_BIN)) throw new Error(`could not build the duet binary (cargo build -p duet exited ${r.status})`);
  return DUET_BIN;
}

async function waitHealthy(url, child, logs, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`duet exited with ${child.exitCode} during start-up:\n${logs.join('').slice(-3000)}`);
    try {
      const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) });
      if (res.ok) return;
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(`duet did not become healthy within ${timeoutMs} ms:\n${logs.join('').slice(-3000)}`);
}

/** A running duet; `stop()` kills it, `start()` starts it again on the same port and database. */
export class DuetServer {
  /**
   * `dataDir`: where the SQLite database lives (default: a new temporary folder); `env`: more
   * environment for the server (settings such as `DUET_API__PASSWORD_FAILURES_PER_MINUTE`).
   */
  constructor({ dataDir, env } = {}) {
    this.dataDir = dataDir ?? mkdtempSync(path.join(os.tmpdir(), 'duet-e2e-'));
    this.extraEnv = env ?? {};
    this.child = null;
    this.logs = [];
  }

  async start() {
    ensureDuetBinary();
    this.port ??= await freePort();
    this.url = `http://127.0.0.1:${this.port}`;
    const env = {
      ...process.env,
      PORT: String(this.port),
      HOST: '127.0.0.1',
      DUET_DATA_DIR: this.dataDir,
      DATABASE_URL: `sqlite://${path.join(this.dataDir, 'duet.sqlite3')}`,
      DUET_FRONTEND_DIR: DIST,
      RUST_LOG: process.env.RUST_LOG || 'warn',
      ...this.extraEnv,
    };
    delete env.REDIS_URL;
    this.logs = [];
    const child = spawn(DUET_BIN, [], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', (d) => this.logs.push(d.toString()));
    child.stderr.on('data', (d) => this.logs.push(d.toString()));
    this.child = child;
    await waitHealthy(this.url, child, this.logs, 30000);
    return this;
  }

  /** Kills the server (SIGKILL by default: a crash, nothing flushed beyond what was acknowledged). */
  async stop(signal = 'SIGKILL') {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill(signal);
    await exited;
    this.child = null;
  }

  async close() {
    await this.stop('SIGKILL');
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}
