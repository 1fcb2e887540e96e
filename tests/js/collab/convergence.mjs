// Convergence under concurrency and faults, driven by a Rust integration test
// (services/realtime-hub/tests/it/e2e.rs), which owns the hubs, PostgreSQL and Redis.
//
//   node convergence.mjs --hubs http://127.0.0.1:A,http://127.0.0.1:B --code CODE --seed 7
//        [--clients 6] [--rounds 60] [--restart-redis] [--kill-hub 0]
//
// N Yjs clients spread over the hubs (alternating; odd ones start on HTTP long-polling and upgrade)
// make random concurrent inserts and deletes (multi-byte and emoji text included), disconnect and
// reconnect at random, and keep typing while offline. Half-way through, the script asks its driver
// (a `CTL {...}` line on stdout, answered with a line on stdin) to restart Redis or to kill a hub; the
// killed hub's clients then move to the other hub, as the gateway would send them. At the end every
// client must hold the same text, every edit must be acknowledged, and every acknowledged update must
// be in the final document. The last line is `RESULT {...}` (JSON).
import { createInterface } from "node:readline";
import * as Y from "yjs";
import { CollabClient, rng, sleep, until, safeOffset, containsAll } from "./client.mjs";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => {
    if (a.startsWith("--")) acc.push([a.slice(2), all[i + 1] && !all[i + 1].startsWith("--") ? all[i + 1] : true]);
    return acc;
  }, []),
);
const hubs = String(args.hubs).split(",");
const code = String(args.code);
const seed = Number(args.seed ?? 1);
const nClients = Number(args.clients ?? 6);
const rounds = Number(args.rounds ?? 60);
const random = rng(seed);
const pick = (xs) => xs[Math.floor(random() * xs.length)];
const WORDS = ["a", "b", "é", "ß", "😀", "👩‍💻", "漢字", "\n", "let x = 1;", "🚀🚀", "ü", " "];

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function ctl(cmd) {
  console.log(`CTL ${JSON.stringify(cmd)}`);
  await lines.next();
}

const clients = [];
const hubOf = [];
for (let i = 0; i < nClients; i++) {
  hubOf.push(i % hubs.length);
  const transports = i % 2 ? ["polling", "websocket"] : ["websocket"];
  clients.push(new CollabClient(hubs[hubOf[i]], { code, name: `client-${i}`, transports }));
}
const ready = await until(() => clients.every((c) => c.saved), 15000);
if (!ready) {
  console.log(`RESULT ${JSON.stringify({ ok: false, reason: "clients did not join", errors: clients.flatMap((c) => c.errors) })}`);
  process.exit(1);
}

function edit(c) {
  const s = c.value;
  if (s.length > 0 && random() < 0.35) {
    const at = safeOffset(s, Math.floor(random() * s.length));
    let len = 1 + Math.floor(random() * 3);
    let end = Math.min(s.length, at + len);
    end = safeOffset(s, end);
    if (end > at) c.text.delete(at, end - at);
  } else {
    c.text.insert(safeOffset(s, Math.floor(random() * (s.length + 1))), pick(WORDS));
  }
}

function moveTo(i, hubIndex) {
  const old = clients[i];
  const c = new CollabClient(hubs[hubIndex], { code, name: old.name, userId: old.userId, transports: ["websocket"] });
  // Same document (with its unacknowledged edits) on a new connection, as a browser tab would keep it.
  Y.applyUpdate(c.doc, Y.encodeStateAsUpdate(old.doc));
  c.acked = old.acked;
  c.errors = old.errors;
  old.socket.disconnect();
  clients[i] = c;
  hubOf[i] = hubIndex;
}

const offline = new Map(); // client index -> round to reconnect at
let faultDone = false;
for (let r = 0; r < rounds; r++) {
  for (const c of clients) {
    edit(c);
    if (random() < 0.5) edit(c);
  }
  if (random() < 0.15) {
    const i = Math.floor(random() * clients.length);
    if (!offline.has(i) && clients[i].socket.connected) {
      clients[i].socket.disconnect();
      offline.set(i, r + 2 + Math.floor(random() * 6));
    }
  }
  for (const [i, at] of offline) {
    if (at <= r) {
      clients[i].socket.connect();
      offline.delete(i);
    }
  }
  if (!faultDone && r >= rounds / 2) {
    faultDone = true;
    if (args["restart-redis"]) await ctl({ do: "restart-redis" });
    if (args["kill-hub"] !== undefined) {
      const dead = Number(args["kill-hub"]);
      await ctl({ do: "kill-hub", hub: dead });
      const survivor = (dead + 1) % hubs.length;
      for (let i = 0; i < clients.length; i++) if (hubOf[i] === dead) moveTo(i, survivor);
      offline.clear();
    }
  }
  await sleep(5 + Math.floor(random() * 25));
}
for (const [i] of offline) clients[i].socket.connect();

const converged = await until(
  () => clients.every((c) => c.saved) && clients.every((c) => c.value === clients[0].value),
  30000,
  50,
);
await sleep(300);
const texts = clients.map((c) => c.value);
const same = texts.every((t) => t === texts[0]);
const acked = clients.reduce((n, c) => n + c.acked.length, 0);
const missing = clients.reduce((n, c) => n + containsAll(clients[0].doc, c.acked).length, 0);
const result = {
  ok: converged && same && missing === 0,
  converged,
  same,
  text: texts[0],
  sv: Buffer.from(Y.encodeStateVector(clients[0].doc)).toString("base64"),
  acked,
  missing,
  unsaved: clients.filter((c) => !c.saved).length,
  errors: clients.flatMap((c) => c.errors).filter((e) => e?.code !== "rate_limited"),
};
console.log(`RESULT ${JSON.stringify(result)}`);
for (const c of clients) c.close();
process.exit(0);
