// The scale-out tests' harness: a cluster from scripts/cluster.sh (nginx, 2 gateways, 2 session-APIs,
// 2 hubs, PostgreSQL, Redis on loopback) in a temp dir, and a workload of real socket.io-client + Yjs
// clients (tests/js/collab/client.mjs) that type continuously through nginx and count acknowledgements.
import { execFile, spawn } from "node:child_process";
import http from "node:http";
import { mkdtempSync, readFileSync, readdirSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { CollabClient, rng, sleep, until, containsAll } from "../js/collab/client.mjs";

const run = promisify(execFile);
export const repo = resolve(process.env.DUET_REPO ?? join(import.meta.dirname, "..", ".."));
const script = join(repo, "scripts", "cluster.sh");

/** The browser client's reconnection settings (frontend/src/connection.js): the figures are a user's. */
export const BROWSER_SOCKET = { reconnectionDelay: 500, reconnectionDelayMax: 4000, randomizationFactor: 0.3 };

export class Cluster {
  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), "duet-cluster-"));
    this.env = {
      ...process.env,
      DUET_CLUSTER_DIR: this.dir,
      DUET_CLUSTER_PORT: "0",
      // scripts/test.sh has built the dev binaries; building release here would take many minutes.
      DUET_CLUSTER_PROFILE: process.env.DUET_CLUSTER_PROFILE ?? "dev",
      DUET_CLUSTER_NO_BUILD: process.env.DUET_CLUSTER_NO_BUILD ?? "1",
    };
  }

  async sh(...args) {
    const { stdout } = await run("bash", [script, ...args], { env: this.env, maxBuffer: 1 << 24 });
    return stdout;
  }

  async start() {
    // Whatever becomes of this process (a crash, a runner's timeout), the cluster goes with it.
    spawn("bash", ["-c", `while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done; exec bash "$0" stop`, script], {
      env: this.env,
      detached: true,
      stdio: "ignore",
    }).unref();
    await this.sh("start");
    await this.readEnv();
  }

  async readEnv() {
    const vars = Object.fromEntries(
      (await this.sh("env"))
        .trim()
        .split("\n")
        .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
    );
    this.vars = vars;
    this.url = vars.DUET_URL;
  }

  /** URL of a service by name (hub-1, gateway-2, …). */
  urlOf(name) {
    return this.vars[`URL_${name.toUpperCase().replaceAll("-", "_")}`];
  }

  async kill(name, signal = "TERM") {
    await this.sh("kill", name, signal);
  }

  async up(name) {
    await this.sh("up", name);
    await this.readEnv();
  }

  async stop() {
    await this.sh("stop").catch(() => {});
  }

  /** The last lines of every log, for a failing test's output. */
  logs(lines = 15) {
    if (!existsSync(this.dir)) return "";
    return readdirSync(this.dir)
      .filter((f) => f.endsWith(".log"))
      .map((f) => `--- ${f}\n${readFileSync(join(this.dir, f), "utf8").split("\n").slice(-lines).join("\n")}`)
      .join("\n");
  }

  async redis(...args) {
    const { stdout } = await run("redis-cli", ["-u", this.vars.REDIS_URL, ...args]);
    return stdout.trim();
  }

  async placement(code) {
    return this.redis("GET", `duet:placement:${code}`);
  }

  async createInterview() {
    const r = await fetch(`${this.url}/api/session`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ language: "python" }),
    });
    if (r.status !== 201) throw new Error(`POST /api/session: ${r.status} ${await r.text()}`);
    return (await r.json()).session_code;
  }

  /** Whether a service's /healthz answers. */
  async healthy(name) {
    try {
      return (await fetch(`${this.urlOf(name)}/healthz`, { signal: AbortSignal.timeout(1000) })).ok;
    } catch {
      return false;
    }
  }
}

/**
 * Participants of several interviews typing at once through nginx: per interview one WebSocket client
 * and one long-polling client (named `polling-N`; it never upgrades, so every one of its requests goes
 * through nginx and either gateway). Every disconnect is recorded with its time.
 */
export class Workload {
  constructor(cluster, { interviews = 6, typeEveryMs = 150, seed = 1 } = {}) {
    this.cluster = cluster;
    this.nInterviews = interviews;
    this.typeEveryMs = typeEveryMs;
    this.random = rng(seed);
    this.clients = [];
    this.codes = [];
    this.typing = false;
  }

  async start() {
    for (let i = 0; i < this.nInterviews; i++) this.codes.push(await this.cluster.createInterview());
    for (const code of this.codes) {
      for (const transports of [["websocket"], ["polling"]]) this.add(code, transports);
    }
    if (!(await until(() => this.clients.every((c) => c.joined && c.synced), 15000))) {
      throw new Error(`clients did not join: ${JSON.stringify(this.clients.flatMap((c) => c.errors))}`);
    }
    this.typing = true;
    this.loop = this.#type();
    this.#monitor();
  }

  add(code, transports = ["websocket"]) {
    const c = new CollabClient(this.cluster.url, {
      code,
      name: `${transports[0]}-${this.clients.length}`,
      transports,
      socketOptions: BROWSER_SOCKET,
    });
    c.disconnects = [];
    c.ups = [];
    c.wasUp = false;
    c.socket.on("disconnect", (reason) => {
      c.wasUp = false;
      c.disconnects.push({ at: Date.now(), reason });
    });
    this.clients.push(c);
    return c;
  }

  async #type() {
    while (this.typing) {
      for (const c of this.clients) {
        // Typing goes on while offline too: those edits are re-sent on reconnect.
        const s = c.value;
        c.text.insert(Math.floor(this.random() * (s.length + 1)), "ab"[Math.floor(this.random() * 2)]);
      }
      await sleep(this.typeEveryMs);
    }
  }

  async pause() {
    this.typing = false;
    await this.loop;
  }

  resume() {
    if (this.typing) return;
    this.typing = true;
    this.loop = this.#type();
  }

  of(code) {
    return this.clients.filter((c) => c.code === code);
  }

  disconnectsSince(t) {
    return this.clients.flatMap((c) => c.disconnects.filter((d) => d.at >= t).map((d) => ({ client: c.name, code: c.code, ...d })));
  }

  /**
   * Waits until every client in `clients` has been disconnected after `since` and is joined and synced
   * again; returns the longest time that took from `since` (ms), or null past `timeoutMs`. The times
   * come from the monitor (10 ms resolution), not from when this is called.
   */
  async resyncTime(clients, since, timeoutMs) {
    const backAt = (c) => {
      const down = c.disconnects.find((d) => d.at >= since);
      return down && c.ups.find((t) => t >= down.at);
    };
    await until(() => clients.every(backAt), timeoutMs, 10);
    const times = clients.map(backAt);
    this.lastResync = times.filter(Boolean).map((t) => t - since).sort((a, b) => a - b);
    return times.every(Boolean) ? Math.max(0, ...this.lastResync) : null;
  }

  /** Records when each client is joined and synced again after a disconnect (`c.ups`). */
  #monitor() {
    this.monitor = setInterval(() => {
      const now = Date.now();
      for (const c of this.clients) {
        const up = c.joined && c.synced;
        if (up && !c.wasUp) c.ups.push(now);
        c.wasUp = up;
      }
    }, 10);
  }

  /**
   * Stops typing, waits until every client is saved and each interview converged, then checks with a
   * fresh participant per interview (whose document comes from the hub, which loaded it from the
   * database after any failover) that no acknowledged edit is missing. Returns a summary.
   */
  async settle(timeoutMs = 20000) {
    await this.pause();
    const settled = await until(
      () =>
        this.clients.every((c) => c.saved) &&
        this.codes.every((code) => new Set(this.of(code).map((c) => c.value)).size === 1),
      timeoutMs,
      50,
    );
    const state = this.clients.map((c) => ({ name: c.name, code: c.code, saved: c.saved, joined: c.joined, synced: c.synced, pending: c.pending, dirty: c.dirty, len: c.value.length, errors: c.errors }));
    if (!settled) throw new Error(`clients did not settle: ${JSON.stringify(state)}`);
    const lost = [];
    let acked = 0;
    for (const code of this.codes) {
      const probe = new CollabClient(this.cluster.url, { code, name: "probe", socketOptions: BROWSER_SOCKET });
      const ok = await until(() => probe.joined && probe.synced && probe.value === this.of(code)[0].value, 10000);
      const updates = this.of(code).flatMap((c) => c.acked);
      acked += updates.length;
      const missing = containsAll(probe.doc, updates);
      if (!ok || missing.length) lost.push({ code, synced: ok, missing: missing.length, probe: probe.value.length, client: this.of(code)[0].value.length });
      probe.close();
    }
    return { acked, lost, errors: this.clients.flatMap((c) => c.errors) };
  }

  close() {
    this.typing = false;
    clearInterval(this.monitor);
    for (const c of this.clients) c.close();
  }
}

/** One GET on a new connection: its status, or `error: CODE`. */
function getOnce(url) {
  return new Promise((done) => {
    // agent: false — a connection per request, so what is measured is nginx's answer, not a race with
    // a keep-alive connection closed under the client (which browsers retry by themselves).
    const req = http.get(url, { agent: false, timeout: 5000 }, (res) => {
      res.resume();
      res.on("end", () => done(res.statusCode));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", (e) => done(`error: ${e.code ?? e.message}`));
  });
}

/** Requests through nginx every `everyMs` until stopped; counts answers by status. */
export function pollHttp(url, everyMs = 50) {
  const counts = new Map();
  const failures = [];
  let on = true;
  const loop = (async () => {
    while (on) {
      const status = await getOnce(url);
      counts.set(status, (counts.get(status) ?? 0) + 1);
      if (status !== 200) failures.push({ at: Date.now(), status });
      await sleep(everyMs);
    }
  })();
  return {
    counts,
    failures,
    async stop() {
      on = false;
      await loop;
      return { counts: Object.fromEntries(counts), failures };
    },
  };
}
