// Failover and drain figures (docs/BENCHMARKS.md, "Scale-out: the gateway's cost, failover and
// drains") on the native cluster of scripts/cluster.sh (nginx → 2 gateways → 2 hubs and 2
// session-APIs, PostgreSQL, Redis), with the workload of the scale-out tests (tests/cluster/harness.mjs:
// per interview one WebSocket and one long-polling socket.io-client + Yjs participant typing through
// nginx every 150 ms, with the browser client's reconnection settings).
//
//   cargo build --release -p duet-gateway -p duet-session-api -p duet-realtime-hub
//   node tests/bench/failover.mjs [--runs 3] [--interviews 12]      (DUET_CLUSTER_PROFILE=dev: debug builds)
//
// Each run, on new interviews:
//   kill    a hub killed (-9): from the kill to every affected client joined, synced, and holding every
//           edit its interview had acknowledged before the kill ("resynced"); acknowledged edits lost.
//   drain   a hub stopped (SIGTERM): the hub's time to exit; per affected client the reconnects, the
//           time from the signal to resynced, and the disruption: the longest gap between two of its
//           edits being acknowledged (typing goes on offline; the first acknowledged edit after the
//           reconnect closes the gap); acknowledged edits lost.
//   rolling a rolling restart of every service (hub-1, hub-2, session-api-1, session-api-2, gateway-1,
//           gateway-2; each SIGTERM, waited for, then started again): per step the clients hit, their
//           reconnects, the longest ack gap of any client, the process's time to exit; over the whole
//           restart the reconnects per client; acknowledged edits lost.
// The hub taken down alternates between runs, and is the one with more of the run's interviews.
// Prints every run's figures, then medians and ranges over the runs, against issue 16's targets:
// failover ≤ 3 s with 0 acked edits lost; a rolling restart ≤ 1 reconnect per client and ≤ 3 s
// disruption per step.
import { execFileSync } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";

process.env.DUET_CLUSTER_PROFILE ??= "release";
process.env.DUET_CLUSTER_NO_BUILD ??= "1";
process.env.DUET_API__CREATES_PER_MINUTE ??= "0";
const { Cluster, Workload, repo } = await import("../cluster/harness.mjs");
const { sleep, until } = await import("../js/collab/client.mjs");
const Y = await import("yjs");

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const RUNS = Number(arg("runs", 3));
const INTERVIEWS = Number(arg("interviews", 12));
const ONLY = arg("scenarios", "kill,drain,rolling").split(",");
const TARGET_MS = 3000;
const STEPS = ["hub-1", "hub-2", "session-api-1", "session-api-2", "gateway-1", "gateway-2"];

const load = () => loadavg().map((l) => l.toFixed(2)).join(" ");
const median = (xs) => {
  const s = xs.filter((x) => x !== null && !Number.isNaN(x)).sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : NaN;
};
const span = (xs) => `${median(xs)} (${Math.min(...xs)}–${Math.max(...xs)})`;

const cluster = new Cluster();

function pidOf(name) {
  return Number(readFileSync(join(cluster.dir, `${name}.pid`), "utf8").trim());
}
/** Whether `pid` runs (a zombie, exited but not yet reaped by whoever adopted it, does not). */
const alive = (pid) => {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
};

/**
 * Signals a service's process itself (no shell in between, so `t0` is the signal's moment; the
 * measurements start at once). cluster.sh notices by itself that the process is gone.
 */
function signal(name, sig) {
  const pid = pidOf(name);
  const t0 = Date.now();
  process.kill(pid, sig);
  return { pid, t0 };
}

/**
 * Time from `t0` until `pid` has exited (10 ms resolution). Then waits for it to be reaped too: an
 * exited process not yet reaped by whoever adopted it still answers `kill -0`, and cluster.sh would
 * take it for running and not start it again; past 10 s its pid file is removed instead.
 */
async function exited(name, pid, t0) {
  await until(() => !alive(pid), 30000, 10);
  const ms = Date.now() - t0;
  const gone = () => {
    try {
      process.kill(pid, 0);
      return false;
    } catch {
      return true;
    }
  };
  if (!(await until(gone, 10000, 10))) rmSync(join(cluster.dir, `${name}.pid`), { force: true });
  return ms;
}

/** Records when each client's edits are acknowledged (`c.ackTimes`), without touching the client. */
function watchAcks(work) {
  for (const c of work.clients) {
    c.ackTimes = [];
    const acked = c.acked;
    acked.push = function (...xs) {
      for (let i = 0; i < xs.length; i++) c.ackTimes.push(Date.now());
      return Array.prototype.push.apply(this, xs);
    };
  }
}

/**
 * The longest time `c` went without an edit acknowledged, over [from, to] (ms): from its last
 * acknowledgement before `from`, through those in the window, to `to` if none came after the last.
 */
function longestGap(c, from, to) {
  const ts = c.ackTimes.filter((t) => t <= to);
  let prev = ts.findLast((t) => t < from) ?? from;
  let gap = 0;
  for (const t of ts) {
    if (t < from) continue;
    gap = Math.max(gap, t - prev);
    prev = t;
  }
  return Math.max(gap, to - prev);
}

/** Clock per Yjs client id that `updates` (inserts only: the workload never deletes) reach. */
function reach(updates) {
  return updates.length ? Y.decodeStateVector(Y.encodeStateVectorFromUpdate(Y.mergeUpdates(updates))) : new Map();
}

/**
 * Waits until every client in `clients` holds every edit its interview had acknowledged before
 * `t0` (its document's state vector covers theirs), while joined and synced after a disconnect
 * since `t0`; per client the time from `t0` (ms, null if not within `timeoutMs`).
 */
async function resynced(work, clients, t0, timeoutMs) {
  const need = new Map(work.codes.map((code) => [code, reach(work.of(code).flatMap((c) => c.acked))]));
  const done = new Map();
  const end = t0 + timeoutMs;
  while (Date.now() < end && done.size < clients.length) {
    for (const c of clients) {
      if (done.has(c)) continue;
      if (!(c.joined && c.synced && c.disconnects.some((d) => d.at >= t0))) continue;
      const has = Y.decodeStateVector(Y.encodeStateVector(c.doc));
      if ([...need.get(c.code)].every(([id, clock]) => (has.get(id) ?? 0) >= clock)) done.set(c, Date.now() - t0);
    }
    await sleep(10);
  }
  return clients.map((c) => done.get(c) ?? null);
}

async function placements(work) {
  const placed = new Map();
  for (const code of work.codes) placed.set(code, await cluster.placement(code));
  return placed;
}

async function lossCheck(work) {
  try {
    const r = await work.settle(30000);
    work.resume();
    return { acked: r.acked, lost: r.lost.reduce((s, l) => s + l.missing + (l.synced ? 0 : 1), 0), errors: r.errors.length };
  } catch (e) {
    // Clients that never settle (their edits refused, say): reported, not fatal to the other runs.
    const refused = work.clients.flatMap((c) => c.errors.map((x) => x?.code ?? String(x)));
    const stuck = work.clients.filter((c) => !c.saved).map((c) => c.name);
    return { acked: null, lost: null, settled: false, stuck, refused: Object.fromEntries([...new Set(refused)].map((k) => [k, refused.filter((x) => x === k).length])) };
  }
}

async function victimOf(work, run) {
  const placed = await placements(work);
  const count = (h) => [...placed.values()].filter((p) => p === h).length;
  const prefer = run % 2 === 0 ? ["hub-1", "hub-2"] : ["hub-2", "hub-1"];
  const victim = count(prefer[1]) > count(prefer[0]) ? prefer[1] : prefer[0];
  return { victim, affected: work.clients.filter((c) => placed.get(c.code) === victim) };
}

async function scenarioKill(work, run) {
  const { victim, affected } = await victimOf(work, run);
  const { pid, t0 } = signal(victim, "SIGKILL");
  const times = await resynced(work, affected, t0, 20000);
  const others = work.disconnectsSince(t0).filter((d) => !affected.some((c) => c.name === d.client)).length;
  const loss = await lossCheck(work);
  await exited(victim, pid, t0);
  await cluster.up(victim);
  const done = times.filter((t) => t !== null);
  return {
    victim,
    clients: affected.length,
    resyncMaxMs: done.length === times.length ? Math.max(...done) : null,
    resyncMs: done.sort((a, b) => a - b),
    othersDisconnected: others,
    ...loss,
  };
}

async function scenarioDrain(work, run) {
  const { victim, affected } = await victimOf(work, run + 1);
  const { pid, t0 } = signal(victim, "SIGTERM");
  const [times, exitMs] = await Promise.all([resynced(work, affected, t0, 20000), exited(victim, pid, t0)]);
  await sleep(1000);
  const t1 = Date.now();
  const reconnects = work.clients.map((c) => c.disconnects.filter((d) => d.at >= t0).length);
  const gaps = affected.map((c) => longestGap(c, t0, t1));
  const dropped = affected.map((c) => c.disconnects.find((d) => d.at >= t0)?.at - t0);
  const loss = await lossCheck(work);
  await cluster.up(victim);
  const done = times.filter((t) => t !== null);
  return {
    victim,
    clients: affected.length,
    exitMs,
    disconnectedMs: [Math.min(...dropped), Math.max(...dropped)],
    resyncMaxMs: done.length === times.length ? Math.max(...done) : null,
    resyncMs: done.sort((a, b) => a - b),
    reconnectsMax: Math.max(...reconnects),
    // Clients disconnected more than once: when (ms after the signal), why, and their transport.
    again: work.clients
      .filter((c) => c.disconnects.filter((d) => d.at >= t0).length > 1)
      .map((c) => ({ name: c.name, at: c.disconnects.filter((d) => d.at >= t0).map((d) => [d.at - t0, d.reason]) })),
    reconnectsMeanAffected: +(affected.map((c) => c.disconnects.filter((d) => d.at >= t0).length).reduce((a, b) => a + b, 0) / affected.length).toFixed(2),
    gapMaxMs: Math.max(...gaps),
    gapMedianMs: median(gaps),
    ...loss,
  };
}

async function scenarioRolling(work) {
  const tStart = Date.now();
  const steps = [];
  for (const name of STEPS) {
    const { pid, t0: ts } = signal(name, "SIGTERM");
    const exitMs = await exited(name, pid, ts);
    await cluster.up(name);
    const upMs = Date.now() - ts;
    await sleep(1000);
    await until(() => work.clients.every((c) => c.joined && c.synced), 15000, 10);
    // Long enough for the last reconnect's first acknowledged edit.
    await sleep(500);
    const te = Date.now();
    const hit = work.clients.filter((c) => c.disconnects.some((d) => d.at >= ts));
    const gaps = work.clients.map((c) => longestGap(c, ts, te));
    steps.push({
      name,
      exitMs,
      upMs,
      clients: hit.length,
      reconnectsMax: Math.max(0, ...hit.map((c) => c.disconnects.filter((d) => d.at >= ts).length)),
      gapMaxMs: Math.max(...gaps),
    });
  }
  const per = work.clients.map((c) => c.disconnects.filter((d) => d.at >= tStart).length);
  const loss = await lossCheck(work);
  return {
    steps,
    reconnectsMax: Math.max(...per),
    reconnectsMean: +(per.reduce((a, b) => a + b, 0) / per.length).toFixed(2),
    worstStepGapMs: Math.max(...steps.map((s) => s.gapMaxMs)),
    worstStepReconnects: Math.max(...steps.map((s) => s.reconnectsMax)),
    ...loss,
  };
}

const all = { kill: [], drain: [], rolling: [] };
try {
  const commit = execFileSync("git", ["-C", repo, "rev-parse", "--short", "HEAD"], { encoding: "utf8" }).trim();
  const dirty = execFileSync("git", ["-C", repo, "status", "--porcelain", "--untracked-files=no"], { encoding: "utf8" }).trim() ? " (with uncommitted changes)" : "";
  console.log(`failover bench: ${new Date().toISOString()}, commit ${commit}${dirty}, ${process.env.DUET_CLUSTER_PROFILE} binaries, ${RUNS} runs, ${INTERVIEWS} interviews × 2 clients, load average ${load()}`);
  await cluster.start();
  const scenarios = { kill: scenarioKill, drain: scenarioDrain, rolling: scenarioRolling };
  for (let run = 0; run < RUNS; run++) {
    for (const name of ONLY) {
      // New interviews for each scenario, placed by rendezvous hashing over both hubs.
      let work = new Workload(cluster, { interviews: INTERVIEWS, seed: run * 10 + ONLY.indexOf(name) + 1 });
      try {
        try {
          await work.start();
        } catch (e) {
          // A service not back yet (say): noted, and tried once more.
          console.log(`run ${run + 1} ${name}: the workload did not start (${String(e.message).split("\n")[0]}); trying again`);
          work.close();
          await sleep(1000);
          work = new Workload(cluster, { interviews: INTERVIEWS, seed: run * 10 + ONLY.indexOf(name) + 101 });
          await work.start();
        }
        watchAcks(work);
        await sleep(1000);
        const r = await scenarios[name](work, run);
        all[name].push(r);
        console.log(`run ${run + 1} ${name}: ${JSON.stringify(r)} load ${load()}`);
      } catch (e) {
        console.log(cluster.logs());
        throw e;
      } finally {
        work.close();
      }
      await sleep(1500);
    }
  }

  const verdict = (ok) => (ok ? "met" : "NOT met");
  const col = (rs, k) => rs.map((r) => r[k]);
  if (all.kill.length) {
    const k = all.kill;
    const worst = col(k, "resyncMaxMs");
    console.log(
      `kill -9 of a hub (${k.length} runs, ${span(col(k, "clients"))} clients affected): every affected client resynced after ${span(worst)} ms (median, range); ` +
        `acked edits lost ${col(k, "lost").join(", ")} of ${col(k, "acked").join(", ")}; other hubs' clients disconnected ${col(k, "othersDisconnected").join(", ")} — target ≤ 3 s, 0 lost: ` +
        verdict(worst.every((w) => w !== null && w <= TARGET_MS) && k.every((r) => r.lost === 0)) +
        (k.some((r) => r.settled === false) ? ` — but in ${k.filter((r) => r.settled === false).length} run(s) some clients never settled (see the runs)` : ""),
    );
  }
  if (all.drain.length) {
    const d = all.drain;
    console.log(
      `SIGTERM of a hub (${d.length} runs): exit after ${span(col(d, "exitMs"))} ms; affected clients resynced after ${span(col(d, "resyncMaxMs"))} ms; ` +
        `reconnects per client max ${col(d, "reconnectsMax").join(", ")} (mean of affected ${col(d, "reconnectsMeanAffected").join(", ")}); ` +
        `longest ack gap of any client ${span(col(d, "gapMaxMs"))} ms (median client ${span(col(d, "gapMedianMs"))}); lost ${col(d, "lost").join(", ")} — target ≤ 1 reconnect, ≤ 3 s: ` +
        verdict(d.every((r) => r.reconnectsMax <= 1 && r.gapMaxMs <= TARGET_MS && r.lost === 0)),
    );
  }
  if (all.rolling.length) {
    const r = all.rolling;
    for (const name of STEPS) {
      const s = r.map((x) => x.steps.find((y) => y.name === name));
      console.log(
        `rolling restart, ${name}: exit ${span(col(s, "exitMs"))} ms, back up ${span(col(s, "upMs"))} ms, clients hit ${col(s, "clients").join(", ")}, ` +
          `reconnects per client max ${col(s, "reconnectsMax").join(", ")}, longest ack gap ${span(col(s, "gapMaxMs"))} ms`,
      );
    }
    console.log(
      `rolling restart of every service (${r.length} runs): per step ≤ ${Math.max(...col(r, "worstStepReconnects"))} reconnect(s) per client, longest ack gap in any step ${span(col(r, "worstStepGapMs"))} ms; ` +
        `over the whole restart reconnects per client max ${col(r, "reconnectsMax").join(", ")} (mean ${col(r, "reconnectsMean").join(", ")}); lost ${col(r, "lost").join(", ")} of ${col(r, "acked").join(", ")} — ` +
        `target ≤ 1 reconnect and ≤ 3 s per step: ` +
        verdict(r.every((x) => x.worstStepReconnects <= 1 && x.worstStepGapMs <= TARGET_MS && x.lost === 0)),
    );
  }
  console.log(`finished ${new Date().toISOString()}, load average ${load()}`);
} finally {
  await cluster.stop();
}
