// What the gateway costs an edit (docs/BENCHMARKS.md, "Scale-out: the gateway's cost, failover and
// drains"), and the Redis hop between two hubs, on the native cluster of scripts/cluster.sh with release
// binaries.
//
//   cargo build --release -p duet-gateway -p duet-session-api -p duet-realtime-hub -p duet-loadgen
//   node tests/bench/gateway.mjs [--clients 200,1000] [--rounds 3] [--seconds 10] [--hop-runs 3]
//
// 1. The hop: both hubs pinned to core 0, the load generator (tools/loadgen, one thread) on core 1;
//    1,000 clients in interviews of 5 (5 edits/s each, y-protocols updates acked after commit) whose
//    members are spread over the two hubs, straight to them. The generator splits the deliveries by
//    whether sender and receiver are on the same hub: cross-hub p99 against same-hub p99, same run.
// 2. The gateway: hub-2 and gateway-2 stopped; hub-1 and gateway-1 pinned to core 0, the generator on
//    core 1. Each round runs every client count twice — straight to the hub, and through the gateway
//    (client → gateway → hub → gateway → other clients; acks come back the same way) — on new
//    interviews each time, the order of the two alternating from round to round so that whatever
//    else loads the machine hits both alike. Printed: per run p50/p99 of delivery (emit → another
//    participant's receipt) and of the durable ack, server CPU (hub + gateway) per 1,000 deliveries;
//    then per client count the medians over rounds, with and without, and the paired differences.
//
// nginx, the session-APIs, PostgreSQL and Redis run unpinned (used only to create the interviews,
// and PostgreSQL for the hub's commits in both modes alike). Logs at warn.
import { execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";

process.env.DUET_CLUSTER_PROFILE ??= "release";
process.env.DUET_CLUSTER_NO_BUILD ??= "1";
process.env.DUET_LOG_LEVEL ??= "warn";
// The bench creates hundreds of interviews from one address.
process.env.DUET_API__CREATES_PER_MINUTE ??= "0";
const { Cluster, repo } = await import("../cluster/harness.mjs");

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const CLIENTS = arg("clients", "200,1000").split(",").map(Number);
const ROUNDS = Number(arg("rounds", 3));
const SECONDS = Number(arg("seconds", 10));
const HOP_RUNS = Number(arg("hop-runs", 3));
const ROOM = 5;
const RATE = 5;

const bin = (name) => join(repo, "target", process.env.DUET_CLUSTER_PROFILE, name);
for (const b of ["duet-gateway", "duet-session-api", "duet-realtime-hub", "duet-loadgen"]) {
  if (!existsSync(bin(b))) {
    console.error(`${bin(b)} is missing: cargo build --release -p duet-gateway -p duet-session-api -p duet-realtime-hub -p duet-loadgen`);
    process.exit(2);
  }
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : NaN;
};
const range = (xs) => `${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)}`;
const f2 = (x) => (typeof x === "number" ? x.toFixed(2) : String(x));
const sign = (x) => (x >= 0 ? "+" : "") + x.toFixed(2);
const load = () => loadavg().map((l) => l.toFixed(2)).join(" ");

const cluster = new Cluster();

/** The pid of a service's binary (cluster.sh records the pid it execs into). */
function pidOf(name) {
  const pid = Number(readFileSync(join(cluster.dir, `${name}.pid`), "utf8").trim());
  const comm = readFileSync(`/proc/${pid}/comm`, "utf8").trim();
  if (!comm.startsWith("duet-")) throw new Error(`${name}: pid ${pid} is ${comm}, not a duet binary`);
  return pid;
}

/** Pins every thread of `pid` to `cpu`. */
function pin(pid, cpu) {
  execFileSync("taskset", ["-a", "-p", "-c", String(cpu), String(pid)], { stdio: "ignore" });
}

async function interviews(clients) {
  const codes = [];
  for (let i = 0; i < Math.ceil(clients / ROOM); i++) codes.push(await cluster.createInterview());
  return codes;
}

/** One load run of tools/loadgen on core 1; its JSON line. */
async function loadgen(urls, clients, pids) {
  const t0 = Date.now();
  const codes = await interviews(clients);
  console.error(`${codes.length} interviews created in ${Date.now() - t0} ms`);
  const args = [
    "-c", "1", bin("duet-loadgen"),
    "--urls", urls.join(","), "--codes", codes.join(","), "--clients", String(clients),
    "--room", String(ROOM), "--rate", String(RATE), "--seconds", String(SECONDS), "--warmup", "3",
    "--mode", "yjs", "--cpu-pids", pids.join(","),
  ];
  const child = spawn("taskset", args, { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  const code = await new Promise((done) => child.on("exit", done));
  const line = out.trim().split("\n").pop();
  try {
    return JSON.parse(line);
  } catch {
    throw new Error(`loadgen exited ${code}: ${out}`);
  }
}

function row(label, r) {
  return `| ${label} | ${r.clients} | ${f2(r.p50)} | ${f2(r.p99)} | ${f2(r.ack_p50)} | ${f2(r.ack_p99)} | ${r.received} / ${r.expected} | ${r.errors} | ${r.generator_lag_max_ms} | ${r.server_cpu_pct} | ${f2(r.server_cpu_ms_per_1k)} | ${load()} |`;
}

const HEAD = [
  "| run | clients | p50 ms | p99 ms | ack p50 ms | ack p99 ms | delivered / expected | errors | generator lag ms | server CPU % | server CPU ms / 1k deliveries | load average |",
  "|---|---|---|---|---|---|---|---|---|---|---|---|",
];

const lines = [...HEAD];
const hop = [];
const results = new Map(CLIENTS.map((n) => [n, { direct: [], gateway: [] }]));

/** Medians over the rounds so far (printed after every round, so a cut-short run still reports). */
function summarize() {
  console.log(lines.join("\n"));
  console.log();
  if (hop.length) {
    const hops = hop.map((r) => r.cross_hub_p99 - r.same_hub_p99);
    const mid = [...hop].sort((a, b) => a.cross_hub_p99 - a.same_hub_p99 - (b.cross_hub_p99 - b.same_hub_p99))[Math.floor(hop.length / 2)];
    console.log(
      `hop at 1,000 clients (median of ${hop.length} runs; ${hops.map(sign).join(", ")}): cross-hub p99 ${f2(mid.cross_hub_p99)} ms (${mid.cross_hub_received} deliveries) ` +
        `vs same-hub p99 ${f2(mid.same_hub_p99)} ms (${mid.same_hub_received}) = ${sign(mid.cross_hub_p99 - mid.same_hub_p99)} ms; p50 ${f2(mid.cross_hub_p50)} vs ${f2(mid.same_hub_p50)}`,
    );
  }
  for (const [n, { direct, gateway: via }] of results) {
    const stat = (k) => {
      const d = direct.map((r) => r[k]);
      const g = via.map((r) => r[k]);
      const diff = g.map((x, i) => x - d[i]);
      return `${k} ${median(d).toFixed(2)} (${range(d)}) → ${median(g).toFixed(2)} (${range(g)}) ms: ${sign(median(diff))} ms (paired, ${diff.map(sign).join(", ")})`;
    };
    const lost = [...direct, ...via].reduce((s, r) => s + r.loss + r.errors, 0);
    console.log(`${n} clients, ${direct.length} rounds, straight → through the gateway: ${stat("p50")}; ${stat("p99")}; ${stat("ack_p50")}; ${stat("ack_p99")}`);
    console.log(
      `${n} clients: server CPU ms per 1k deliveries ${median(direct.map((r) => r.server_cpu_ms_per_1k)).toFixed(2)} → ${median(via.map((r) => r.server_cpu_ms_per_1k)).toFixed(2)} (hub + gateway); lost or errors ${lost}`,
    );
  }
}

try {
  const started = new Date();
  const commit = execFileSync("git", ["-C", repo, "rev-parse", "--short", "HEAD"], { encoding: "utf8" }).trim();
  const dirty = execFileSync("git", ["-C", repo, "status", "--porcelain", "--untracked-files=no"], { encoding: "utf8" }).trim() ? " (with uncommitted changes)" : "";
  console.log(`gateway bench: ${started.toISOString()}, commit ${commit}${dirty}, ${process.env.DUET_CLUSTER_PROFILE} binaries, load average ${load()}`);
  await cluster.start();
  const hubs = ["hub-1", "hub-2"].map(pidOf);
  for (const p of hubs) pin(p, 0);

  // 1. Cross-hub against same-hub deliveries, in one run.
  for (let i = 0; i < HOP_RUNS; i++) {
    const r = await loadgen([cluster.urlOf("hub-1"), cluster.urlOf("hub-2")], 1000, hubs);
    lines.push(row("2 hubs, interviews split", r));
    hop.push(r);
    console.error(`hop run ${i + 1}: ${JSON.stringify(r)}`);
  }

  // 2. One hub, with and without the gateway.
  await cluster.kill("hub-2", "TERM");
  await cluster.kill("gateway-2", "TERM");
  const hub = pidOf("hub-1");
  const gateway = pidOf("gateway-1");
  pin(hub, 0);
  pin(gateway, 0);
  for (let round = 0; round < ROUNDS; round++) {
    for (const n of CLIENTS) {
      const order = round % 2 === 0 ? ["direct", "gateway"] : ["gateway", "direct"];
      for (const mode of order) {
        const url = mode === "direct" ? cluster.urlOf("hub-1") : cluster.urlOf("gateway-1");
        const r = await loadgen([url], n, [hub, gateway]);
        r.load1 = loadavg()[0];
        results.get(n)[mode].push(r);
        lines.push(row(`round ${round + 1}, ${mode === "direct" ? "straight to the hub" : "through the gateway"}`, r));
        console.error(`${new Date().toISOString()} round ${round + 1} ${mode} ${n}: ${JSON.stringify(r)}`);
      }
    }
    if (round < ROUNDS - 1) summarize();
  }

  summarize();
  console.log(`finished ${new Date().toISOString()}, load average ${load()}`);
} finally {
  await cluster.stop();
}
