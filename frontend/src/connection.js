// The realtime connection: socket.io-client speaking Duet's protocol (docs/PROTOCOL.md).
//
// - `join_session` on every (re)connect, then the y-protocols sync handshake of each shared document:
//   our sync step 1, the server's step 2 + step 1, our step 2 (which carries whatever the server lacks —
//   edits made offline, or edits whose ack was lost).
// - Every local Y.Doc update is sent as one emit holding one binary y-protocols message, with an ack
//   callback. The server acks only after the change is committed, so the set of local updates without a
//   successful ack is exactly "unsaved edits"; they are re-sent (merged) when an ack fails and covered
//   by the step 2 of the handshake after a reconnect.
// - Awareness (name, colour, cursor) rides on the same event (messageAwareness = 1).
//
// Two documents can share the socket, each kept by a DocSync of its own (its event, Y.Doc, awareness,
// unsaved edits and save state): the code (`yjs`, always) and the interviewers' private notes
// (`notes`, only once `openNotes` is called — the page does so only for an interviewer, so a
// candidate's page never listens to that event nor sends it).
//
// - An edit the server refuses for good (the interview ended, the candidate's editing locked, not
//   started yet) is dropped: re-sending it could never succeed, and keeping it would leave this
//   document diverged from everyone else's. The connection stops using the document ('edit-refused')
//   and the page hands it a fresh one (`replaceDoc`), filled from the server by a new sync handshake
//   ('resynced'). The same for the notes ('notes-edit-refused', `replaceNotesDoc`, 'notes-resynced').
//
// Events (lib0 Observable): 'status' (status object), 'joined' (ack), 'synced', 'fatal' ({code, message}),
// 'server-error' ({code, message}), 'edit-refused' ({code, message, dropped}), 'resynced', the notes'
// 'notes-status', 'notes-synced', 'notes-edit-refused', 'notes-resynced' and 'notes-closed' ({code,
// message}: the server refused the notes to this connection), and the server's own events forwarded as
// 'sync_code', 'user_joined', 'user_left', 'language_updated', 'execution_result', 'code_updated',
// 'interview_state', 'activity' (interviewers only: someone pasted, left the page or came back). The editor page reads them through the session model (session-model.js), not
// directly.
import { io } from 'socket.io-client';
import * as Y from 'yjs';
import * as encoding from 'lib0/encoding';
import * as decoding from 'lib0/decoding';
import { Observable } from 'lib0/observable';
import * as syncProtocol from 'y-protocols/sync';
import * as awarenessProtocol from 'y-protocols/awareness';

export const MESSAGE_SYNC = 0;
export const MESSAGE_AWARENESS = 1;

const ACK_TIMEOUT_MS = 20000;
const JOIN_TIMEOUT_MS = 10000;
// A gap in what the server sent us (a message lost on the way: a proxy that died holding a long-poll
// response) leaves remote structs pending in the Y.Doc. Asked for again after this long, and again
// every GAP_RETRY_MS while the gap stays.
const GAP_WAIT_MS = 300;
const GAP_RETRY_MS = 2000;
const FORWARDED = ['sync_code', 'user_joined', 'user_left', 'language_updated', 'execution_result', 'code_updated', 'interview_state', 'activity'];
// Errors after which reconnecting cannot help.
const FATAL_CODES = new Set(['session_not_found', 'forbidden', 'unauthorized', 'invalid_token', 'removed']);
// The same, when the server sends them as an `error` event (`removed`: an interviewer removed this
// participant; the server closes the connection next).
const FATAL_EVENT_CODES = new Set(['session_not_found', 'removed']);
/** Edit refusals that no re-send can overcome: the local edits are dropped and the document resynced. */
export const RESYNC_CODES = new Set(['interview_ended', 'editing_locked', 'interview_not_started']);
// Refusals the server also sends as an `error` event although they answer a request this client made
// with an ack (edits, language, runs, interviewer actions): the ack's handler reports them, once.
const ACKED_CODES = new Set([...RESYNC_CODES, 'runs_disabled', 'forbidden']);
/** Refusals of the notes after which this connection stops using them ('notes-closed'). */
const NOTES_CLOSING_CODES = new Set(['forbidden']);
/** Awareness client ids the hub accepts from one connection, over both documents (docs/PROTOCOL.md). */
const MAX_AWARENESS_CLIENTS = 4;

function toUint8Array(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return null;
}

/**
 * One shared document kept in sync over one Socket.IO event of the connection's socket: the handshake,
 * the local updates waiting for their durability ack (`pending`), re-sends, gaps, awareness, refused
 * edits and the replacement document, and its own save state. Its events are the connection's, named
 * with its prefix ('' for the code, 'notes-' for the notes).
 */
class DocSync {
  /**
   * @param {DuetConnection} conn
   * @param {{event: string, prefix: string, doc: Y.Doc, awareness: awarenessProtocol.Awareness, closingCodes?: Set<string>}} opts
   */
  constructor(conn, { event, prefix, doc, awareness, closingCodes = new Set() }) {
    this.conn = conn;
    this.event = event;
    this.prefix = prefix;
    this.closingCodes = closingCodes;
    this.doc = doc;
    this.awareness = awareness;
    this.synced = false;
    /** A replaced document waits for its first sync step 2 from the server. */
    this.resyncing = false;
    /** Local updates not yet acknowledged as committed: seq → update. */
    this.pending = new Map();
    this.closed = false;
    this._seq = 0;
    this._retryTimer = null;
    this._retryDelay = 1000;
    this._gapTimer = null;
    this._lastStatusKey = '';
    /** Bumped when the document is replaced: acks for the old one's emits are ignored. */
    this._epoch = 0;
    /** The document was given up after a refused edit; waiting for replaceDoc. */
    this._discarded = false;
    this._onDocUpdate = this._onDocUpdate.bind(this);
    this._onAwarenessUpdate = this._onAwarenessUpdate.bind(this);
    doc.on('update', this._onDocUpdate);
    awareness.on('update', this._onAwarenessUpdate);
  }

  get _live() {
    return this.conn.joined && this.conn.socket.connected && !this.closed;
  }

  _emit(name, args = []) {
    this.conn.emit(this.prefix + name, args);
  }

  /** After each join: sync step 1 (our state vector) and our awareness. */
  start() {
    if (this.closed) return;
    // The server answers with step 2 (what we lack) and its step 1.
    const encoder = encoding.createEncoder();
    encoding.writeVarUint(encoder, MESSAGE_SYNC);
    syncProtocol.writeSyncStep1(encoder, this.doc);
    this._send(encoding.toUint8Array(encoder), []);
    // Our awareness (name, colour, cursor) for everyone else.
    if (this.awareness.getLocalState() !== null) {
      this._sendAwareness([this.doc.clientID]);
    }
  }

  onDisconnect() {
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    // The rejoin's sync handshake repairs any gap.
    clearTimeout(this._gapTimer);
    this._gapTimer = null;
    // Remote participants' cursors are stale now; the server re-sends them after we re-join.
    const others = [...this.awareness.getStates().keys()].filter((id) => id !== this.doc.clientID);
    if (others.length) awarenessProtocol.removeAwarenessStates(this.awareness, others, this.conn);
  }

  onMessage(data) {
    const buf = toUint8Array(data);
    if (!buf || this._discarded || this.closed) return;
    try {
      const decoder = decoding.createDecoder(buf);
      const type = decoding.readVarUint(decoder);
      if (type === MESSAGE_SYNC) {
        // A step 2 written in reply to the server's step 1 covers every local update we have now.
        const covers = [...this.pending.keys()];
        const encoder = encoding.createEncoder();
        encoding.writeVarUint(encoder, MESSAGE_SYNC);
        const syncType = syncProtocol.readSyncMessage(decoder, encoder, this.doc, this.conn);
        if (encoding.length(encoder) > 1) this._send(encoding.toUint8Array(encoder), covers);
        if (syncType === syncProtocol.messageYjsSyncStep2 && !this.synced) {
          this.synced = true;
          this.resyncing = false;
          this._emit('synced');
          this.conn._emitStatus();
        } else if (syncType === syncProtocol.messageYjsSyncStep2 && this.resyncing) {
          this.resyncing = false;
          this._emit('resynced');
          this.conn._emitStatus();
        }
        this._watchGap(GAP_WAIT_MS);
      } else if (type === MESSAGE_AWARENESS) {
        awarenessProtocol.applyAwarenessUpdate(this.awareness, decoding.readVarUint8Array(decoder), this.conn);
      }
    } catch (e) {
      this.conn.emit('server-error', [{ code: 'invalid_update', message: `Could not read a message from the server: ${e.message}` }]);
    }
  }

  /** True while remote structs or deletions wait for something we never received. */
  get hasGap() {
    return this.doc.store.pendingStructs !== null || this.doc.store.pendingDs !== null;
  }

  /**
   * The server sends each participant every change in order, so a pending struct means a message was
   * lost between it and us (the socket stayed up, so no rejoin would repair it). Our sync step 1 asks
   * for everything we lack; the server's step 2 fills the gap.
   */
  _watchGap(delay) {
    if (!this.hasGap || this._gapTimer) return;
    this._gapTimer = setTimeout(() => {
      this._gapTimer = null;
      if (!this.hasGap || !this._live) return;
      const encoder = encoding.createEncoder();
      encoding.writeVarUint(encoder, MESSAGE_SYNC);
      syncProtocol.writeSyncStep1(encoder, this.doc);
      this.conn.socket.emit(this.event, encoding.toUint8Array(encoder));
      this._watchGap(GAP_RETRY_MS);
    }, delay);
  }

  _onDocUpdate(update, origin) {
    if (origin === this.conn || this._discarded || this.closed) return; // from the server, or given up
    const seq = ++this._seq;
    this.pending.set(seq, update);
    if (this._live) {
      const encoder = encoding.createEncoder();
      encoding.writeVarUint(encoder, MESSAGE_SYNC);
      syncProtocol.writeUpdate(encoder, update);
      this._send(encoding.toUint8Array(encoder), [seq]);
    }
    this.conn._emitStatus();
  }

  /** Emits one message; a successful ack marks the local updates it `covers` as saved. */
  _send(message, covers) {
    const epoch = this._epoch;
    this.conn.socket.timeout(ACK_TIMEOUT_MS).emit(this.event, message, (err, res) => {
      if (epoch !== this._epoch || this.closed) return; // about a document this connection no longer has
      const code = res?.error?.code;
      if (this.closingCodes.has(code)) {
        this._close(res.error);
      } else if (covers.length && RESYNC_CODES.has(code)) {
        this._refused(res.error);
      } else if (!err && !(res && res.ok === false)) {
        for (const seq of covers) this.pending.delete(seq);
        if (covers.length) this._retryDelay = 1000;
      } else if (covers.length) {
        if (res?.error) this.conn.emit('server-error', [res.error]);
        this._scheduleRetry();
      }
      this.conn._emitStatus();
    });
  }

  /**
   * The server refused an edit for good: the unsaved local updates are dropped and this document is
   * not used any more (nothing of it is sent, nothing received is applied to it) until `replaceDoc`.
   */
  _refused(error) {
    const dropped = this.pending.size;
    this._reset();
    this._discarded = true;
    this._emit('edit-refused', [{ code: error.code, message: typeof error.message === 'string' ? error.message : '', dropped }]);
  }

  /** The server will not let this connection use the document at all: stop, and say so. */
  _close(error) {
    this.conn._docClosed(this);
    this._emit('closed', [{ code: error.code, message: typeof error.message === 'string' ? error.message : '' }]);
  }

  _reset() {
    this.pending.clear();
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._retryDelay = 1000;
    clearTimeout(this._gapTimer);
    this._gapTimer = null;
    this._epoch++;
  }

  /**
   * Continues with a fresh, empty document (and its awareness) in place of the current one, which the
   * caller destroys: its cursor is withdrawn from the others, and a new sync handshake fills the new
   * document from the server ('resynced' when its step 2 arrived). Edits to the new document are sent
   * as usual.
   */
  replaceDoc(doc, awareness) {
    if (this.closed) return;
    const connected = this._live;
    const oldDoc = this.doc;
    const oldAwareness = this.awareness;
    if (connected && oldAwareness.getLocalState() !== null) {
      // Others drop this page's old cursor (the listener below sends it).
      awarenessProtocol.removeAwarenessStates(oldAwareness, [oldDoc.clientID], 'local');
    }
    oldDoc.off('update', this._onDocUpdate);
    oldAwareness.off('update', this._onAwarenessUpdate);
    this._reset();
    this._discarded = false;
    this.doc = doc;
    this.awareness = awareness;
    this.resyncing = true;
    doc.on('update', this._onDocUpdate);
    awareness.on('update', this._onAwarenessUpdate);
    if (connected) {
      // The hub takes no more awareness ids from this connection: join afresh (its ack runs every
      // document's handshake), which starts a new count.
      if (this.conn._awarenessClients.size >= MAX_AWARENESS_CLIENTS) this.conn._rejoin();
      else this.start();
    }
    this.conn._emitStatus();
  }

  /** Re-sends every unacknowledged update, merged into one, after a growing delay. */
  _scheduleRetry() {
    if (this._retryTimer || !this.conn.joined) return;
    const delay = this._retryDelay;
    this._retryDelay = Math.min(this._retryDelay * 2, 15000);
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      if (!this._live || this.pending.size === 0) return;
      const covers = [...this.pending.keys()];
      const encoder = encoding.createEncoder();
      encoding.writeVarUint(encoder, MESSAGE_SYNC);
      syncProtocol.writeUpdate(encoder, Y.mergeUpdates([...this.pending.values()]));
      this._send(encoding.toUint8Array(encoder), covers);
    }, delay);
  }

  _onAwarenessUpdate({ added, updated, removed }, origin) {
    if (origin !== 'local') return; // only our own state goes out; the server relays the others
    const changed = added.concat(updated, removed);
    if (changed.length && this._live) this._sendAwareness(changed);
  }

  _sendAwareness(clients) {
    for (const id of clients) this.conn._awarenessClients.add(id);
    const encoder = encoding.createEncoder();
    encoding.writeVarUint(encoder, MESSAGE_AWARENESS);
    encoding.writeVarUint8Array(encoder, awarenessProtocol.encodeAwarenessUpdate(this.awareness, clients));
    this.conn.socket.emit(this.event, encoding.toUint8Array(encoder));
  }

  /**
   * This document's save state: `{state, unsaved, connected, online}`, `state` one of
   * connecting | syncing | saving | saved | reconnecting | offline | error.
   */
  get status() {
    const c = this.conn;
    const unsaved = this.pending.size;
    const connected = c.joined && c.socket.connected;
    let state;
    if (c.fatal || this.closed) state = 'error';
    else if (connected) state = !this.synced || this.resyncing ? 'syncing' : unsaved > 0 ? 'saving' : 'saved';
    else if (!c.everJoined) state = 'connecting';
    else if (!c.online || unsaved > 0) state = 'offline';
    else state = 'reconnecting';
    return { state, unsaved, connected, online: c.online };
  }

  _emitStatus() {
    const st = this.status;
    const key = `${st.state}:${st.unsaved}`;
    if (key === this._lastStatusKey) return;
    this._lastStatusKey = key;
    this._emit('status', [st]);
  }

  /** Stops using the document: no more sends, timers or listeners (the caller destroys it). */
  close() {
    if (this.closed) return;
    if (this._live && this.awareness.getLocalState() !== null) {
      awarenessProtocol.removeAwarenessStates(this.awareness, [this.doc.clientID], 'local');
    }
    this._reset();
    this.closed = true;
    this.pending.clear();
    this.doc.off('update', this._onDocUpdate);
    this.awareness.off('update', this._onAwarenessUpdate);
  }
}

/**
 * The interview's Socket.IO socket, not connected yet (`connect()` it, or give it to a
 * `DuetConnection`). A page may open it before it knows who joins: the Engine.IO handshake then
 * overlaps the page's API calls instead of following them.
 * @param {string} sessionCode
 * @param {object} [opts]
 * @param {string} [opts.url] server origin (default: this page's)
 * @param {object} [opts.socketOptions]
 */
export function openSocket(sessionCode, { url, socketOptions = {} } = {}) {
  return io(url, {
    path: '/socket.io/',
    autoConnect: false,
    reconnectionDelay: 500,
    reconnectionDelayMax: 4000,
    randomizationFactor: 0.3,
    timeout: 10000,
    // The gateway routes every Engine.IO request of an interview to the same hub by this parameter
    // (rendezvous hashing on the session code), so all participants normally meet on one hub.
    query: { session: sessionCode },
    ...socketOptions,
  });
}

export class DuetConnection extends Observable {
  /**
   * @param {object} opts
   * @param {string} opts.sessionCode
   * @param {string} opts.name
   * @param {string} opts.userId
   * @param {Y.Doc} opts.doc
   * @param {awarenessProtocol.Awareness} opts.awareness
   * @param {string} [opts.token] credentials from the session API, when it hands any out
   * @param {string} [opts.url] server origin (default: this page's)
   * @param {object} [opts.socketOptions]
   * @param {object} [opts.socket] a socket.io-client Socket to use instead of a new one (tests)
   */
  constructor({ sessionCode, name, userId, doc, awareness, token, url, socketOptions = {}, socket = null }) {
    super();
    this.sessionCode = sessionCode;
    this.name = name;
    this.userId = userId;
    this.token = token;
    this.joined = false;
    this.everJoined = false;
    this.fatal = null;
    this.online = typeof navigator === 'undefined' ? true : navigator.onLine !== false;
    this._joinTimer = null;
    /** Awareness client ids this socket has published, both documents together (the hub limits them). */
    this._awarenessClients = new Set();

    this.socket = socket ?? openSocket(sessionCode, { url, socketOptions });

    /** The code document (`yjs`). */
    this.code = new DocSync(this, { event: 'yjs', prefix: '', doc, awareness });
    /** The interviewers' private notes (`notes`), once `openNotes` is called; null otherwise. */
    this.notes = null;

    this._onNotesMessage = (data) => this.notes?.onMessage(data);
    this._onOnline = () => {
      this.online = true;
      if (!this.socket.connected && !this.fatal) this.socket.connect();
      this._emitStatus();
    };
    this._onOffline = () => {
      this.online = false;
      this._emitStatus();
    };

    const s = this.socket;
    s.on('connect', () => this._onConnect());
    s.on('disconnect', (reason) => this._onDisconnect(reason));
    s.on('connect_error', () => this._emitStatus());
    s.io.on('reconnect_attempt', () => this._emitStatus());
    s.on('yjs', (data) => this._onYjsMessage(data));
    s.on('error', (err) => this._onServerError(err));
    for (const ev of FORWARDED) s.on(ev, (payload) => this.emit(ev, [payload]));

    if (typeof window !== 'undefined') {
      window.addEventListener('online', this._onOnline);
      window.addEventListener('offline', this._onOffline);
    }
  }

  // The code document's state, as before there were two.
  get doc() {
    return this.code.doc;
  }

  get awareness() {
    return this.code.awareness;
  }

  get pending() {
    return this.code.pending;
  }

  get synced() {
    return this.code.synced;
  }

  get resyncing() {
    return this.code.resyncing;
  }

  /** True while the code document waits for something we never received. */
  get hasGap() {
    return this.code.hasGap;
  }

  /**
   * Connects and joins. A socket given already connected (the page opens it beside its API calls,
   * `openSocket`) joins at once; one still connecting joins when it connects.
   */
  connect() {
    if (this.socket.connected) this._onConnect();
    else if (!this.socket.active) this.socket.connect();
    this._emitStatus();
    return this;
  }

  _onConnect() {
    this._awarenessClients.clear();
    this._join();
  }

  // ---- joining ------------------------------------------------------------------------------------

  _join() {
    clearTimeout(this._joinTimer);
    const payload = { session_code: this.sessionCode, name: this.name, user_id: this.userId, yjs: true };
    if (this.token) payload.token = this.token;
    this._emitStatus();
    this._joining = true;
    this.socket.timeout(JOIN_TIMEOUT_MS).emit('join_session', payload, (err, res) => {
      this._joining = false;
      if (!this.socket.connected) return;
      if (err || !res || res.ok === false) {
        const error = res?.error ?? { code: 'join_timeout', message: 'The server did not answer in time.' };
        if (FATAL_CODES.has(error.code)) {
          this._setFatal(error);
          return;
        }
        this.emit('server-error', [error]);
        this._joinTimer = setTimeout(() => this.socket.connected && !this.joined && this._join(), 2000);
        return;
      }
      this.joined = true;
      this.everJoined = true;
      if (typeof res.user_id === 'string') this.userId = res.user_id;
      // The documents open now; one opened while 'joined' is told (the notes, for an interviewer)
      // starts its own handshake.
      const docs = this._docs();
      this.emit('joined', [res]);
      for (const d of docs) d.start();
      this._emitStatus();
    });
  }

  /** Joins again on the same socket (the hub's per-connection awareness count starts afresh). */
  _rejoin() {
    this.joined = false;
    this._awarenessClients.clear();
    this._join();
  }

  _docs() {
    return this.notes ? [this.code, this.notes] : [this.code];
  }

  _onDisconnect(reason) {
    this.joined = false;
    for (const d of this._docs()) d.onDisconnect();
    // The server closed the socket on purpose: socket.io will not retry by itself.
    if (reason === 'io server disconnect' && !this.fatal) {
      setTimeout(() => !this.fatal && !this.socket.connected && this.socket.connect(), 1000);
    }
    this._emitStatus();
  }

  _onServerError(err) {
    const error = err && typeof err === 'object' ? err : { code: 'internal', message: String(err) };
    if (FATAL_EVENT_CODES.has(error.code)) {
      this._setFatal(error);
      return;
    }
    if (ACKED_CODES.has(error.code)) return;
    if (error.code === 'not_joined' && this.socket.connected && !this._joining) {
      // The server lost track of us (e.g. restarted state): join again.
      this.joined = false;
      this._join();
    }
    this.emit('server-error', [error]);
  }

  _setFatal(error) {
    this.fatal = error;
    this.joined = false;
    this.socket.disconnect();
    this.emit('fatal', [error]);
    this._emitStatus();
  }

  // ---- the code document --------------------------------------------------------------------------

  _onYjsMessage(data) {
    this.code.onMessage(data);
  }

  /**
   * Continues with a fresh, empty code document (and its awareness) in place of the current one, which
   * the caller destroys (see DocSync.replaceDoc). Used after 'edit-refused'; also works at any other
   * time.
   */
  replaceDoc(doc, awareness) {
    this.code.replaceDoc(doc, awareness);
  }

  // ---- the interviewers' private notes ------------------------------------------------------------

  /**
   * Starts keeping `doc` (root type `notes`) in sync with the interview's private notes over the
   * `notes` event: only now does this connection listen to that event. For interviewers only (the
   * server refuses anyone else: 'notes-closed'). Opened while joined, the handshake starts at once;
   * otherwise with the next join.
   */
  openNotes(doc, awareness) {
    if (this.notes) throw new Error('the notes are already open');
    this.notes = new DocSync(this, { event: 'notes', prefix: 'notes-', doc, awareness, closingCodes: NOTES_CLOSING_CODES });
    this.socket.on('notes', this._onNotesMessage);
    if (this.joined && this.socket.connected) this.notes.start();
    this._emitStatus();
    return this.notes;
  }

  /** After 'notes-edit-refused': a fresh notes document in place of the given-up one. */
  replaceNotesDoc(doc, awareness) {
    this.notes?.replaceDoc(doc, awareness);
  }

  /** Stops the notes: nothing more is sent, and the `notes` event is not listened to any more. */
  closeNotes() {
    if (!this.notes) return;
    this.notes.close();
    this.notes = null;
    this.socket.off('notes', this._onNotesMessage);
  }

  _docClosed(d) {
    if (d === this.notes) this.closeNotes();
    else d.close();
  }

  /** The notes' save state (as `status`), or null when this connection has none open. */
  get notesStatus() {
    return this.notes?.status ?? null;
  }

  // ---- other events -------------------------------------------------------------------------------

  /** Emits an event with an ack; resolves with the ack ({ok, ...}) or rejects when not connected. */
  request(event, payload, timeoutMs = 10000) {
    return new Promise((resolve, reject) => {
      if (!this.joined || !this.socket.connected) {
        reject(Object.assign(new Error('Not connected'), { code: 'offline' }));
        return;
      }
      this.socket.timeout(timeoutMs).emit(event, payload, (err, res) => {
        if (err) reject(Object.assign(new Error('No answer from the server'), { code: 'timeout' }));
        else if (res && res.ok === false) reject(Object.assign(new Error(res.error?.message ?? 'Refused'), res.error ?? {}));
        else resolve(res ?? { ok: true });
      });
    });
  }

  // ---- status -------------------------------------------------------------------------------------

  /**
   * What the connection indicator shows: the code document's save state (DocSync.status). `state` is
   * one of connecting | syncing | saving | saved | reconnecting | offline | error.
   */
  get status() {
    return this.code.status;
  }

  /** 'status' (the code's) and 'notes-status', each when it changed. */
  _emitStatus() {
    for (const d of this._docs()) d._emitStatus();
  }

  destroy() {
    clearTimeout(this._joinTimer);
    this.closeNotes();
    this.code.close();
    if (typeof window !== 'undefined') {
      window.removeEventListener('online', this._onOnline);
      window.removeEventListener('offline', this._onOffline);
    }
    this.socket.disconnect();
    super.destroy();
  }
}
