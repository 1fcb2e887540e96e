// Load generator for the hub benchmark (docs/BENCHMARKS.md, "Hub"). Speaks Engine.IO v4 / Socket.IO v5
// directly over `ws` (socket.io-client costs too much per client to run thousands in one process).
//
//   node loadgen.mjs --urls http://127.0.0.1:A[,http://127.0.0.1:B] --codes C1,C2,... --clients 1000
//        [--room 5] [--rate 5] [--seconds 20] [--warmup 3] [--mode yjs|seed|seed-replace]
//
// Clients are grouped in interviews of --room; with several URLs the members of one interview are
// spread over them (the cross-hub case). Each client makes --rate edits per second:
//   yjs:  a Yjs update (insert a marker, delete its previous one) as a `yjs` binary event with an ack;
//   seed: as the seed's editor: takes the texts it is sent (`sync_code`, `code_updated`) and sends
//         `code_change {code}` with its own 64-byte line (holding a marker) changed or added;
//   seed-replace: `code_change {code}` with only its 64-byte line, never taking what it is sent.
// Latency = time from the sender's emit to a peer's first receipt of the marker (one process, one clock).
// Prints one JSON line: sent, expected and received deliveries, loss, p50/p99/max latency, ack latency.
import WebSocket from "ws";
import * as Y from "yjs";
import * as encoding from "lib0/encoding";

const args = Object.fromEntries(process.argv.slice(2).map((a, i, all) => [a.replace(/^--/, ""), all[i + 1]]).filter((_, i) => i % 2 === 0));
const urls = args.urls.split(",");
const codes = args.codes.split(",");
const nClients = Number(args.clients ?? 1000);
const room = Number(args.room ?? 5);
const rate = Number(args.rate ?? 5);
const seconds = Number(args.seconds ?? 20);
const warmup = Number(args.warmup ?? 3);
const mode = args.mode ?? "yjs";
const CONNECT_CONCURRENCY = 100;

const sentAt = new Map(); // "client.seq" -> ms
const latencies = [];
// With several hubs: deliveries between clients of different hubs (through the bus) and of the same
// hub, measured in the same run.
const crossHub = [];
const sameHub = [];
const hubOf = (id) => (id % room) % urls.length;
const ackLatencies = [];
let measuring = false;
let collecting = false; // deliveries are counted until the drain ends
let sent = 0;
let received = 0;
let errors = 0;
const MARK = /~(\d+)\.(\d+)~/g;

// `seen` (seed clients): the newest marker recorded per sender — a text holds every participant's line.
function record(text, clientId, seen) {
  const now = performance.now();
  for (const m of text.matchAll(MARK)) {
    if (seen) {
      const last = seen.get(m[1]) ?? 0;
      if (Number(m[2]) <= last) continue;
      seen.set(m[1], Number(m[2]));
    }
    if (Number(m[1]) === clientId) continue;
    const key = `${m[1]}.${m[2]}`;
    const t = sentAt.get(key);
    if (t === undefined) continue;
    if (t.measured) {
      received++;
      latencies.push(now - t.at);
      if (urls.length > 1) (hubOf(Number(m[1])) === hubOf(clientId) ? sameHub : crossHub).push(now - t.at);
    }
  }
}

class Client {
  constructor(id, url, code) {
    this.id = id;
    this.code = code;
    this.seq = 0;
    this.nextAck = 1;
    this.acks = new Map();
    this.pendingBinary = null;
    this.updates = mode === "yjs" ? precompute(id, EDITS_PER_CLIENT) : null;
    this.text = mode === "seed" ? "" : null; // a seed client's editor
    this.seen = new Map();
    this.ws = new WebSocket(`${url.replace(/^http/, "ws")}/socket.io/?EIO=4&transport=websocket`, { perMessageDeflate: false });
    this.ready = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.ws.on("error", reject);
    });
    this.ws.on("message", (data, isBinary) => this.onMessage(data, isBinary));
  }

  send(s) {
    this.ws.send(s);
  }

  emit(event, arg, onAck) {
    let id = "";
    if (onAck) {
      id = String(this.nextAck++);
      this.acks.set(id, onAck);
    }
    this.send(`42${id}${JSON.stringify([event, arg])}`);
  }

  emitBinary(event, buf, onAck) {
    let id = "";
    if (onAck) {
      id = String(this.nextAck++);
      this.acks.set(id, onAck);
    }
    this.send(`451-${id}${JSON.stringify([event, { _placeholder: true, num: 0 }])}`);
    this.send(buf);
  }

  onMessage(data, isBinary) {
    if (isBinary) {
      const p = this.pendingBinary;
      this.pendingBinary = null;
      if (p && p.event === "yjs" && collecting) record(Buffer.from(data).toString("latin1"), this.id);
      return;
    }
    const s = data.toString();
    switch (s[0]) {
      case "0":
        this.send("40");
        return;
      case "2":
        this.send("3");
        return;
      case "4":
        break;
      default:
        return;
    }
    const t = s[1];
    if (t === "0") {
      this.join();
    } else if (t === "2" || t === "3") {
      const m = /^4[23](\d*)(.*)$/s.exec(s);
      if (t === "3") {
        const cb = this.acks.get(m[1]);
        if (cb) {
          this.acks.delete(m[1]);
          cb(JSON.parse(m[2])[0]);
        }
        return;
      }
      const [event, body] = JSON.parse(m[2]);
      if (event === "code_updated") {
        if (collecting) record(body.code, this.id, this.text === null ? null : this.seen);
        if (this.text !== null) this.text = body.code;
      } else if (event === "sync_code") {
        if (this.text !== null) this.text = body.code ?? "";
        this.resolveReady(); // the Node peer does not ack joins
      }
      else if (event === "error") errors++;
    } else if (t === "5") {
      const m = /^45(\d+)-(\d*)(.*)$/s.exec(s);
      const [event] = JSON.parse(m[3]);
      this.pendingBinary = { event };
    } else if (t === "6") {
      const m = /^46(\d+)-(\d*)(.*)$/s.exec(s);
      const cb = this.acks.get(m[2]);
      this.acks.delete(m[2]);
      cb?.(JSON.parse(m[3])[0]);
    }
  }

  join() {
    this.emit("join_session", { session_code: this.code, name: `load-${this.id}`, yjs: mode === "yjs" }, (res) => {
      if (!res?.ok) errors++;
      this.resolveReady();
    });
  }

  edit() {
    if (this.updates && this.seq >= this.updates.length) return;
    const seq = ++this.seq;
    const marker = `~${this.id}.${seq}~`;
    const entry = { at: performance.now(), measured: measuring };
    sentAt.set(`${this.id}.${seq}`, entry);
    if (measuring) sent++;
    if (mode === "yjs") {
      const t0 = entry.at;
      const m = entry.measured;
      this.emitBinary("yjs", this.updates[seq - 1], (res) => {
        if (!res?.ok) errors++;
        else if (m) ackLatencies.push(performance.now() - t0);
      });
    } else {
      const line = `${marker.padEnd(63, ".")}\n`;
      if (this.text === null) this.emit("code_change", { code: line });
      else {
        const lines = this.text.split(/(?<=\n)/).filter((l) => l !== "");
        const mine = lines.findIndex((l) => l.startsWith(`~${this.id}.`));
        if (mine >= 0) lines[mine] = line;
        else {
          if (lines.length > 0 && !lines[lines.length - 1].endsWith("\n")) lines[lines.length - 1] += "\n";
          lines.push(line);
        }
        this.text = lines.join("");
        this.emit("code_change", { code: this.text });
      }
    }
  }
}

// Edits per client for the whole run (warm-up, measurement, slack), prepared before it starts so the
// generator does no Yjs work while measuring.
const EDITS_PER_CLIENT = Math.ceil((warmup + seconds + 2) * rate) + 10;

/** The y-protocols update messages of one client: each inserts marker `~id.seq~` and deletes the last. */
function precompute(id, n) {
  const doc = new Y.Doc();
  const text = doc.getText("code");
  let last = null;
  doc.on("update", (u) => (last = u));
  const out = [];
  for (let seq = 1; seq <= n; seq++) {
    doc.transact(() => {
      if (text.length > 0) text.delete(0, text.length);
      text.insert(0, `~${id}.${seq}~`);
    });
    const enc = encoding.createEncoder();
    encoding.writeVarUint(enc, 0);
    encoding.writeVarUint(enc, 2);
    encoding.writeVarUint8Array(enc, last);
    out.push(encoding.toUint8Array(enc));
  }
  return out;
}

function pct(xs, p) {
  if (xs.length === 0) return null;
  const s = Float64Array.from(xs).sort();
  return Math.round(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] * 100) / 100;
}

const clients = [];
for (let i = 0; i < nClients; i++) {
  const r = Math.floor(i / room);
  const url = urls[hubOf(i)];
  clients.push(new Client(i, url, codes[r % codes.length]));
  if (clients.length % CONNECT_CONCURRENCY === 0) await Promise.all(clients.slice(-CONNECT_CONCURRENCY).map((c) => c.ready));
}
await Promise.all(clients.map((c) => c.ready));

// Event-loop lag of the generator itself: if it is high, the generator (not the server) is the limit.
let lagMax = 0;
let last = performance.now();
const lagTimer = setInterval(() => {
  const now = performance.now();
  lagMax = measuring ? Math.max(lagMax, now - last - 100) : lagMax;
  last = now;
}, 100);

const period = 1000 / rate;
const timers = clients.map((c) => {
  const start = Math.random() * period;
  return setTimeout(() => {
    c.timer = setInterval(() => c.edit(), period);
    c.edit();
  }, start);
});
await new Promise((r) => setTimeout(r, warmup * 1000));
measuring = true;
collecting = true;
await new Promise((r) => setTimeout(r, seconds * 1000));
measuring = false;
for (const c of clients) clearInterval(c.timer);
timers.forEach(clearTimeout);
await new Promise((r) => setTimeout(r, 2000)); // drain
collecting = false;
clearInterval(lagTimer);
const expected = sent * (room - 1);
console.log(
  JSON.stringify({
    mode,
    clients: nClients,
    hubs: urls.length,
    sent,
    expected,
    received,
    loss: expected - received,
    p50: pct(latencies, 50),
    p99: pct(latencies, 99),
    max: pct(latencies, 100),
    ack_p50: pct(ackLatencies, 50),
    ack_p99: pct(ackLatencies, 99),
    errors,
    generator_lag_max_ms: Math.round(lagMax),
    ...(urls.length > 1
      ? {
          cross_hub_received: crossHub.length,
          cross_hub_p50: pct(crossHub, 50),
          cross_hub_p99: pct(crossHub, 99),
          same_hub_received: sameHub.length,
          same_hub_p50: pct(sameHub, 50),
          same_hub_p99: pct(sameHub, 99),
        }
      : {}),
  }),
);
for (const c of clients) c.ws.terminate();
process.exit(0);
