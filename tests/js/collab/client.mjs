// A Duet collaboration client for tests and benchmarks: socket.io-client + Yjs + y-protocols, speaking
// docs/PROTOCOL.md exactly as the browser client does (join_session, then the y-websocket sync
// handshake over the `yjs` event, durability acks).
import { io } from "socket.io-client";
import * as Y from "yjs";
import * as syncProtocol from "y-protocols/sync";
import * as awarenessProtocol from "y-protocols/awareness";
import * as encoding from "lib0/encoding";
import * as decoding from "lib0/decoding";

const MSG_SYNC = 0;
const MSG_AWARENESS = 1;
const REMOTE = "remote";
// As the browser client (frontend/src/connection.js): a gap in what the server sent (a lost message)
// is asked for again after GAP_WAIT_MS, then every GAP_RETRY_MS while it stays.
const GAP_WAIT_MS = 300;
const GAP_RETRY_MS = 2000;

export class CollabClient {
  /**
   * `drop(bytes)`: a fault injector for tests — an incoming `yjs` message it returns true for is
   * thrown away, as a proxy that died holding a long-poll response would lose it.
   */
  constructor(url, { code, name, userId, token, transports = ["websocket"], onEvent, socketOptions = {}, drop } = {}) {
    this.url = url;
    this.code = code;
    this.name = name;
    this.userId = userId;
    this.token = token;
    this.doc = new Y.Doc();
    this.text = this.doc.getText("code");
    this.awareness = new awarenessProtocol.Awareness(this.doc);
    this.joined = false;
    this.synced = false;
    this.pending = 0; // emits carrying edits, not yet acknowledged
    this.dirty = false; // edits made while not joined: re-sent by the sync handshake
    this.acked = []; // acknowledged updates (for the durability check)
    this.errors = [];
    this.events = [];
    this.onEvent = onEvent;
    this.drop = drop;
    this.gapRequests = 0; // sync step 1s sent because of a gap
    this.gapTimer = null;
    // `session` in the query: what the gateway routes by, as the browser client sends it.
    this.socket = io(url, {
      transports,
      reconnection: true,
      reconnectionDelay: 100,
      reconnectionDelayMax: 500,
      forceNew: true,
      query: { session: code },
      ...socketOptions,
    });
    this.socket.on("connect", () => this.#join());
    this.socket.on("disconnect", () => {
      clearTimeout(this.gapTimer);
      this.gapTimer = null;
      this.joined = false;
      this.synced = false;
      if (this.pending > 0) this.dirty = true; // their acks will never come: the handshake re-sends
      this.pending = 0;
    });
    this.socket.on("yjs", (buf) => {
      const bytes = new Uint8Array(buf);
      if (!this.drop?.(bytes)) this.#receive(bytes);
    });
    this.socket.on("error", (e) => this.errors.push(e));
    for (const ev of ["user_joined", "user_left", "sync_code", "language_updated", "execution_result", "code_updated", "interview_state"]) {
      this.socket.on(ev, (body) => {
        this.events.push([ev, body]);
        this.onEvent?.(ev, body);
      });
    }
    this.doc.on("update", (update, origin) => {
      if (origin === REMOTE) return;
      if (!this.joined) {
        this.dirty = true;
        return;
      }
      const enc = encoding.createEncoder();
      encoding.writeVarUint(enc, MSG_SYNC);
      syncProtocol.writeUpdate(enc, update);
      this.#send(encoding.toUint8Array(enc), update);
    });
    this.awareness.on("update", ({ added, updated, removed }, origin) => {
      if (origin === REMOTE || !this.joined) return;
      const changed = added.concat(updated, removed);
      const enc = encoding.createEncoder();
      encoding.writeVarUint(enc, MSG_AWARENESS);
      encoding.writeVarUint8Array(enc, awarenessProtocol.encodeAwarenessUpdate(this.awareness, changed));
      this.socket.emit("yjs", encoding.toUint8Array(enc));
    });
  }

  #send(msg, update) {
    this.pending++;
    const epoch = this.socket.id;
    this.socket.emit("yjs", msg, (res) => {
      if (this.socket.id !== epoch) return;
      if (res && res.ok) {
        this.pending = Math.max(0, this.pending - 1);
        if (update) this.acked.push(update);
      } else {
        this.errors.push(res?.error ?? res);
      }
    });
  }

  #join() {
    const payload = { session_code: this.code, name: this.name, user_id: this.userId, yjs: true };
    if (this.token) payload.token = this.token;
    this.socket.emit("join_session", payload, (res) => {
      if (!res?.ok) {
        this.errors.push(res?.error ?? res);
        return;
      }
      this.userId = res.user_id;
      this.joined = true;
      this.joinAck = res;
      // Sync step 1: the server answers with step 2 (what we lack) and its own step 1.
      this.#sendStep1();
      this.awareness.setLocalStateField("user", { name: this.name, color: res.color });
    });
  }

  #receive(buf) {
    const dec = decoding.createDecoder(buf);
    const type = decoding.readVarUint(dec);
    if (type === MSG_SYNC) {
      const enc = encoding.createEncoder();
      encoding.writeVarUint(enc, MSG_SYNC);
      const kind = syncProtocol.readSyncMessage(dec, enc, this.doc, REMOTE);
      if (kind === syncProtocol.messageYjsSyncStep1) {
        // Our step 2: everything the server lacks, incl. edits made offline. Acked after commit.
        this.#send(encoding.toUint8Array(enc), null);
        this.dirty = false;
        this.synced = true;
      }
      this.#watchGap(GAP_WAIT_MS);
    } else if (type === MSG_AWARENESS) {
      awarenessProtocol.applyAwarenessUpdate(this.awareness, decoding.readVarUint8Array(dec), REMOTE);
    }
  }

  get hasGap() {
    return this.doc.store.pendingStructs !== null || this.doc.store.pendingDs !== null;
  }

  #sendStep1() {
    const enc = encoding.createEncoder();
    encoding.writeVarUint(enc, MSG_SYNC);
    syncProtocol.writeSyncStep1(enc, this.doc);
    this.socket.emit("yjs", encoding.toUint8Array(enc));
  }

  #watchGap(delay) {
    if (!this.hasGap || this.gapTimer) return;
    this.gapTimer = setTimeout(() => {
      this.gapTimer = null;
      if (!this.hasGap || !this.joined) return;
      this.gapRequests++;
      this.#sendStep1();
      this.#watchGap(GAP_RETRY_MS);
    }, delay);
  }

  /** Saved: connected, synced, and every edit acknowledged. */
  get saved() {
    return this.joined && this.synced && this.pending === 0 && !this.dirty;
  }

  get value() {
    return this.text.toString();
  }

  close() {
    clearTimeout(this.gapTimer);
    this.awareness.destroy();
    this.socket.disconnect();
  }
}

/** mulberry32: a small seeded PRNG, so a seed reproduces a run. */
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function until(pred, timeoutMs, stepMs = 20) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (pred()) return true;
    await sleep(stepMs);
  }
  return pred();
}

/** An offset in `s` (UTF-16) that does not split a surrogate pair. */
export function safeOffset(s, at) {
  if (at > 0 && at < s.length) {
    const c = s.charCodeAt(at);
    if (c >= 0xdc00 && c < 0xe000) return at - 1;
  }
  return at;
}

/** True when every update is already contained in `doc` (applying it changes nothing). */
export function containsAll(doc, updates) {
  const probe = new Y.Doc();
  Y.applyUpdate(probe, Y.encodeStateAsUpdate(doc));
  const sv = Buffer.from(Y.encodeStateVector(probe)).toString("base64");
  const text = probe.getText("code").toString();
  const missing = [];
  updates.forEach((u, i) => {
    Y.applyUpdate(probe, u);
    if (Buffer.from(Y.encodeStateVector(probe)).toString("base64") !== sv || probe.getText("code").toString() !== text) {
      missing.push(i);
    }
  });
  return missing;
}
