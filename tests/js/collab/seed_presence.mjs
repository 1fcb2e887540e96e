// A seed-protocol client (plain `code_change`) and Yjs clients over two hubs; late joiner; presence
// counts after joins, leaves and a heartbeat timeout; bad input over real sockets. Driven by
// services/realtime-hub/tests/it/e2e.rs: `CTL {"do":"count","expect":N}` asks the driver to check the
// database's connected count. Last line: `RESULT {...}`.
//
//   node seed_presence.mjs --hubs http://127.0.0.1:A,http://127.0.0.1:B --code CODE
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { io } from "socket.io-client";
import { CollabClient, sleep, until } from "./client.mjs";

const args = Object.fromEntries(process.argv.slice(2).map((a, i, all) => [a.replace(/^--/, ""), all[i + 1]]).filter((_, i) => i % 2 === 0));
const hubs = args.hubs.split(",");
const code = args.code;
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function ctl(cmd) {
  console.log(`CTL ${JSON.stringify(cmd)}`);
  return (await lines.next()).value;
}
const result = { checks: {} };
const check = (name, ok, detail) => {
  result.checks[name] = ok ? true : detail ?? false;
};
const emitAck = (socket, ev, body) => new Promise((r) => socket.emit(ev, body, r));

// --- A Yjs client on hub 0, a seed client on hub 1.
const a = new CollabClient(hubs[0], { code, name: "Ada" });
await until(() => a.saved, 10000);
const seed = io(hubs[1], { transports: ["websocket"], forceNew: true });
let seedText = null;
const seedErrors = [];
seed.on("sync_code", (m) => (seedText = m.code));
seed.on("code_updated", (m) => (seedText = m.code));
seed.on("error", (e) => seedErrors.push(e));
const joinAck = await emitAck(seed, "join_session", { session_code: code, name: "Seedy" });
check("seed join ack", joinAck?.ok === true && joinAck.count === 2, joinAck);
await until(() => seedText !== null, 5000);

// --- Both type at once: Ada at the start, the seed client at the end of its (possibly stale) text.
// The seed client's tokens differ in more than a digit: `code_change` does not say which text it was
// made from, so a token one character away from the one before ("s14" → "s16" after a stale text
// crossed it) is closer to the merged text than to the stale one and reads as a correction
// (docs/PROTOCOL.md: the closest base is a guess).
const seedToken = (i) => `s${i}😀${String.fromCharCode(65 + i).repeat(6)};`;
for (let i = 0; i < 40; i++) {
  a.text.insert(0, `a${i};`);
  if (i % 2 === 0) {
    seedText = `${seedText}${seedToken(i)}`;
    seed.emit("code_change", { code: seedText });
  }
  await sleep(8);
}
const converged = await until(() => a.saved && seedText === a.value, 10000);
const final = a.value;
const allTokens = [...Array(40).keys()].every((i) => final.includes(`a${i};`)) && [...Array(20).keys()].every((i) => final.includes(seedToken(i * 2)));
check("seed and yjs converge", converged, { yjs: a.value, seed: seedText });
check("neither wipes the other", allTokens, final);

// --- A late joiner on hub 1 gets the full document.
const late = new CollabClient(hubs[1], { code, name: "Late" });
await until(() => late.saved, 10000);
check("late joiner has the full text", late.value === a.value, { late: late.value, a: a.value });
const lastCount = (c, ev) => c.events.filter(([e]) => e === ev).map(([, b]) => b.count).pop();
check("count after joins", await until(() => lastCount(a, "user_joined") === 3, 5000), a.events);
await ctl({ do: "count", expect: 3 });

// --- Leaves.
seed.disconnect();
check("count after a leave", await until(() => lastCount(a, "user_left") === 2, 5000), a.events);

// --- A frozen client (stops answering pings) times out.
const frozen = spawn(process.execPath, ["--input-type=module", "-e", `
  import { io } from "socket.io-client";
  const s = io(${JSON.stringify(hubs[1])}, { transports: ["websocket"] });
  s.emit("join_session", { session_code: ${JSON.stringify(code)}, name: "Frozen" }, () => {
    console.log("joined");
    setTimeout(() => process.kill(process.pid, "SIGSTOP"), 50);
  });
`], { cwd: new URL(".", import.meta.url).pathname, stdio: ["ignore", "pipe", "inherit"] });
check("frozen joins", await until(() => lastCount(a, "user_joined") === 3, 5000), a.events);
check("frozen times out", await until(() => lastCount(a, "user_left") === 2 && a.events.at(-1)[1].name === "Frozen", 10000), a.events.slice(-3));
frozen.kill("SIGKILL");
await ctl({ do: "count", expect: 2 });

// --- Bad input over real sockets: typed errors, nobody else affected.
const bad = io(hubs[0], { transports: ["websocket"], forceNew: true });
const badErrors = [];
bad.on("error", (e) => badErrors.push(e.code));
await new Promise((r) => bad.on("connect", r));
const before = await emitAck(bad, "yjs", new Uint8Array([0, 2, 0, 0]));
check("yjs before join", before?.error?.code === "not_joined", before);
const unknown = await emitAck(bad, "join_session", { session_code: "ZZZZZZZZ", name: "x" });
check("unknown code", unknown?.error?.code === "session_not_found", unknown);
await emitAck(bad, "join_session", { session_code: code, name: "Mallory", yjs: true });
const garbage = await emitAck(bad, "yjs", new Uint8Array([0, 1, 200, 1, 2]));
check("undecodable update", garbage?.error?.code === "invalid_update", garbage);
const noBinary = await emitAck(bad, "yjs", { not: "binary" });
check("yjs without binary", noBinary?.error?.code === "invalid_payload", noBinary);
const big = await emitAck(bad, "yjs", new Uint8Array(600 * 1024));
check("oversize", big?.error?.code === "payload_too_large", big);
const textBefore = a.value;
await sleep(200);
check("nobody else affected", a.value === textBefore && late.value === textBefore && a.errors.length === 0 && late.errors.length === 0, { a: a.errors, late: late.errors });
check("seed saw no error", seedErrors.length === 0, seedErrors);

result.ok = Object.values(result.checks).every((v) => v === true);
result.text = a.value;
console.log(`RESULT ${JSON.stringify(result)}`);
for (const c of [a, late]) c.close();
bad.disconnect();
process.exit(0);
