// Interviews over REST and Socket.IO for the end-to-end tests (duet and the native cluster): create one
// with its tokens, join as a candidate or an interviewer, a participant that records every Engine.IO
// packet it is sent (to assert on the bytes a candidate receives), and a client of the private notes.
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import * as Y from "yjs";
import * as syncProtocol from "y-protocols/sync";
import * as encoding from "lib0/encoding";
import * as decoding from "lib0/decoding";
import { until } from "./client.mjs";

/** `POST /api/session`: the answer (with `interviewer_token` and `links`). */
export async function createInterview(url, body = {}) {
  const res = await fetch(`${url}/api/session`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ language: "python", title: "interview", ...body }),
  });
  assert.equal(res.status, 201, await res.clone().text());
  return res.json();
}

/** A REST call: `{status, body, headers}`. */
export async function rest(url, method, path, { token, body } = {}) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(`${url}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: res.status, body: json, headers: res.headers };
}

/** `POST /api/session/<code>/join`: a participant token (`bearer`: the interviewer link's token). */
export async function joinRest(url, code, { name = "someone", password, bearer } = {}) {
  const body = { name };
  if (password !== undefined) body.password = password;
  const r = await rest(url, "POST", `/api/session/${code}/join`, { token: bearer, body });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body;
}

/**
 * A raw Socket.IO participant that keeps every Engine.IO packet it is sent (text and binary), so a
 * test can assert that something never reached it.
 */
export class Recorder {
  static async join(url, code, { token, name = "recorder", yjs = true } = {}) {
    const r = new Recorder();
    r.socket = io(url, { transports: ["websocket"], forceNew: true, reconnection: false, query: { session: code } });
    r.packets = [];
    r.events = [];
    r.socket.io.on("open", () => {
      r.socket.io.engine.on("packet", (p) => r.packets.push(p.data));
    });
    r.socket.onAny((event, ...args) => r.events.push([event, args]));
    const payload = { session_code: code, name, yjs };
    if (token) payload.token = token;
    r.ack = await r.socket.timeout(5000).emitWithAck("join_session", payload);
    return r;
  }

  /** Everything received so far, as one string (binary frames decoded lossily). */
  received() {
    return this.packets
      .map((d) => (typeof d === "string" ? d : Buffer.from(d instanceof ArrayBuffer ? new Uint8Array(d) : d).toString("latin1")))
      .join("\n");
  }

  emit(event, payload) {
    return this.socket.timeout(5000).emitWithAck(event, payload);
  }

  close() {
    this.socket.disconnect();
  }
}

/** The interviewers' notes over the `notes` event of an already joined socket. */
export class NotesClient {
  constructor(socket) {
    this.socket = socket;
    this.doc = new Y.Doc();
    this.text = this.doc.getText("notes");
    this.acks = [];
    socket.on("notes", (buf) => {
      const dec = decoding.createDecoder(new Uint8Array(buf));
      if (decoding.readVarUint(dec) !== 0) return;
      const enc = encoding.createEncoder();
      encoding.writeVarUint(enc, 0);
      syncProtocol.readSyncMessage(dec, enc, this.doc, "remote");
    });
    this.doc.on("update", (update, origin) => {
      if (origin === "remote") return;
      const enc = encoding.createEncoder();
      encoding.writeVarUint(enc, 0);
      syncProtocol.writeUpdate(enc, update);
      socket.emit("notes", encoding.toUint8Array(enc), (res) => this.acks.push(res));
    });
  }

  /** Sync step 1; resolves with its ack. */
  sync() {
    const enc = encoding.createEncoder();
    encoding.writeVarUint(enc, 0);
    syncProtocol.writeSyncStep1(enc, this.doc);
    return this.socket.timeout(5000).emitWithAck("notes", encoding.toUint8Array(enc));
  }

  get value() {
    return this.text.toString();
  }

  /** Waits until every edit is acked; returns the acks. */
  async saved(n) {
    await until(() => this.acks.length >= n, 5000);
    return this.acks;
  }
}
