// A stand-in for Duet's server, written against docs/PROTOCOL.md with the real `socket.io` server
// package, yjs and y-protocols: the session REST API (create with an interviewer link token, look up,
// join → a participant token and role), join_session (a token's user id and role), the yjs sync
// handshake with durability acks (optionally delayed or refused), awareness relay, presence, language
// and execute_code/execution_result. It has no lifecycle (never sends interview_state): the client
// must work with a server that predates it. It serves frontend/dist like `duet` does. Used to test
// the browser client on its own; the real server is tested by browser-e2e.test.js and
// browser-interview.test.js.
import { randomUUID } from 'node:crypto';
import { Server } from 'socket.io';
import * as Y from 'yjs';
import * as syncProtocol from 'y-protocols/sync';
import * as awarenessProtocol from 'y-protocols/awareness';
import * as encoding from 'lib0/encoding';
import * as decoding from 'lib0/decoding';
import { startStaticServer } from './static-server.js';

const ALPHABET = '23456789ABCDEFGHJKMNPQRSTVWXYZ';
const COLORS = ['#e5484d', '#0090ff', '#30a46c', '#f76b15', '#8e4ec6'];

function json(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

async function readBody(req) {
  let data = '';
  for await (const chunk of req) data += chunk;
  return data;
}

export async function startMockDuet(dist) {
  const sessions = new Map();
  /** Participant tokens handed out by POST /join: token → {code, user_id, role, color}. */
  const tokens = new Map();
  let io = null;
  const ctl = { ackDelayMs: 0, failAcks: false, down: false, committedUpdates: 0 };

  const createSession = (language = 'javascript', title = '') => {
    let code = '';
    for (let i = 0; i < 8; i++) code += ALPHABET[Math.floor(Math.random() * ALPHABET.length)];
    const doc = new Y.Doc();
    const s = {
      id: randomUUID(),
      code,
      language,
      title,
      created_at: new Date().toISOString(),
      linkToken: `link-${randomUUID()}`,
      tokensIssued: 0,
      doc,
      awareness: new awarenessProtocol.Awareness(doc),
      members: new Map(), // socket.id → {user_id, name, color, clients: Set<clientID>}
    };
    s.awareness.setLocalState(null);
    sessions.set(code, s);
    // Relay every document change to the rest of the interview.
    doc.on('update', (update, origin) => {
      const enc = encoding.createEncoder();
      encoding.writeVarUint(enc, 0);
      syncProtocol.writeUpdate(enc, update);
      const msg = encoding.toUint8Array(enc);
      if (origin && typeof origin.to === 'function') origin.to(code).emit('yjs', msg);
      else io.to(code).emit('yjs', msg);
    });
    return s;
  };
  // The REST shape in the seed's names: `session_code` is the code, `code` the current text.
  const info = (s) => ({
    id: s.id,
    session_code: s.code,
    code: s.doc.getText('code').toString(),
    language: s.language,
    title: s.title,
    created_at: s.created_at,
  });

  const handler = async (req, res) => {
    const url = new URL(req.url, 'http://x');
    if (req.method === 'POST' && url.pathname === '/api/session') {
      const body = JSON.parse((await readBody(req)) || '{}');
      if (!['javascript', 'python', 'html'].includes(body.language)) {
        json(res, 400, { error: { code: 'invalid_language', message: 'unknown language' } });
        return true;
      }
      const s = createSession(body.language, body.title || '');
      const candidate = `http://${req.headers.host}/interview/${s.code}`;
      json(res, 201, { ...info(s), interviewer_token: s.linkToken, links: { candidate, interviewer: `${candidate}#token=${s.linkToken}` } });
      return true;
    }
    const j = /^\/api\/session\/([^/]+)\/join$/.exec(url.pathname);
    if (req.method === 'POST' && j) {
      const s = sessions.get(decodeURIComponent(j[1]).toUpperCase());
      if (!s) {
        json(res, 404, { error: { code: 'session_not_found', message: 'No interview has this code.' } });
        return true;
      }
      const body = JSON.parse((await readBody(req)) || '{}');
      const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
      if (bearer && bearer !== s.linkToken && tokens.get(bearer)?.role !== 'interviewer') {
        json(res, 401, { error: { code: 'unauthorized', message: 'the token is not valid' } });
        return true;
      }
      const p = { code: s.code, user_id: randomUUID(), role: bearer ? 'interviewer' : 'candidate', color: COLORS[s.tokensIssued++ % COLORS.length], name: body.name };
      const token = `mock-${randomUUID()}`;
      tokens.set(token, p);
      json(res, 200, { token, role: p.role, user_id: p.user_id, color: p.color });
      return true;
    }
    const m = /^\/api\/session\/([^/]+)$/.exec(url.pathname);
    if (req.method === 'GET' && m) {
      const s = sessions.get(decodeURIComponent(m[1]).toUpperCase());
      if (s) json(res, 200, info(s));
      else json(res, 404, { error: { code: 'session_not_found', message: 'No interview has this code.' } });
      return true;
    }
    return false;
  };

  const web = await startStaticServer(dist, { handler });
  const sockets = new Set();
  web.httpServer.on('connection', (sock) => {
    if (ctl.down) {
      sock.destroy(); // "crashed": nothing listens
      return;
    }
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
  });
  // eslint-disable-next-line prefer-const
  io = new Server(web.httpServer, { path: '/socket.io/', pingInterval: 2000, pingTimeout: 2000 });

  const participants = (s) => {
    const seen = new Map();
    for (const m of s.members.values()) seen.set(m.user_id, { user_id: m.user_id, name: m.name, color: m.color });
    return [...seen.values()];
  };

  io.on('connection', (socket) => {
    let s = null;
    let me = null;
    const err = (code, message) => socket.emit('error', { code, message });

    socket.on('join_session', (p, ack) => {
      const session = sessions.get(String(p?.session_code ?? '').toUpperCase());
      if (!session) {
        err('session_not_found', 'No interview has this code.');
        ack?.({ ok: false, error: { code: 'session_not_found', message: 'No interview has this code.' } });
        return;
      }
      const granted = p.token ? tokens.get(p.token) : null;
      if (p.token && granted?.code !== session.code) {
        err('unauthorized', 'the token is not valid for this interview');
        ack?.({ ok: false, error: { code: 'unauthorized', message: 'the token is not valid for this interview' } });
        return;
      }
      s = session;
      const userId = granted?.user_id ?? (/^[0-9a-f-]{36}$/i.test(p.user_id ?? '') ? p.user_id : randomUUID());
      const existing = [...s.members.values()].find((m) => m.user_id === userId);
      me = { user_id: userId, name: String(p.name).slice(0, 64), color: granted?.color ?? existing?.color ?? COLORS[s.members.size % COLORS.length], clients: new Set() };
      s.members.set(socket.id, me);
      socket.join(s.code);
      const role = granted ? { role: granted.role } : {};
      ack?.({ ok: true, session_id: s.id, user_id: me.user_id, color: me.color, language: s.language, participants: participants(s), ...role });
      socket.emit('sync_code', { code: s.doc.getText('code').toString(), language: s.language, participants: participants(s) });
      socket.to(s.code).emit('user_joined', { ...me, clients: undefined, count: participants(s).length, participants: participants(s) });
      // Everyone else's cursors for the newcomer.
      const others = [...s.awareness.getStates().keys()];
      if (others.length) {
        const enc = encoding.createEncoder();
        encoding.writeVarUint(enc, 1);
        encoding.writeVarUint8Array(enc, awarenessProtocol.encodeAwarenessUpdate(s.awareness, others));
        socket.emit('yjs', encoding.toUint8Array(enc));
      }
    });

    socket.on('yjs', (data, ack) => {
      if (!s) {
        err('not_joined', 'join_session first');
        ack?.({ ok: false, error: { code: 'not_joined', message: 'join_session first' } });
        return;
      }
      const buf = new Uint8Array(data);
      const decoder = decoding.createDecoder(buf);
      const type = decoding.readVarUint(decoder);
      if (type === 0 && ctl.failAcks && buf[1] !== syncProtocol.messageYjsSyncStep1) {
        // Storage is down: nothing is committed, so nothing is applied; the client keeps the edit.
        ack?.({ ok: false, error: { code: 'unavailable', message: 'storage is down' } });
        return;
      }
      if (type === 0) {
        const encoder = encoding.createEncoder();
        encoding.writeVarUint(encoder, 0);
        const before = Y.encodeStateVector(s.doc);
        const syncType = syncProtocol.readSyncMessage(decoder, encoder, s.doc, socket);
        if (encoding.length(encoder) > 1) socket.emit('yjs', encoding.toUint8Array(encoder));
        if (syncType === syncProtocol.messageYjsSyncStep1) {
          const step1 = encoding.createEncoder();
          encoding.writeVarUint(step1, 0);
          syncProtocol.writeSyncStep1(step1, s.doc);
          socket.emit('yjs', encoding.toUint8Array(step1));
          ack?.({ ok: true });
          return;
        }
        const changed = !equalBytes(before, Y.encodeStateVector(s.doc));
        if (!changed) {
          ack?.({ ok: true });
          return;
        }
        const reply = () => {
          ctl.committedUpdates++;
          ack?.({ ok: true });
        };
        if (ctl.ackDelayMs > 0) setTimeout(reply, ctl.ackDelayMs);
        else reply();
      } else if (type === 1) {
        const update = decoding.readVarUint8Array(decoder);
        const dec = decoding.createDecoder(update);
        const n = decoding.readVarUint(dec);
        for (let i = 0; i < n; i++) {
          me.clients.add(decoding.readVarUint(dec));
          decoding.readVarUint(dec);
          decoding.readVarString(dec);
        }
        awarenessProtocol.applyAwarenessUpdate(s.awareness, update, socket);
        socket.to(s.code).emit('yjs', buf);
        ack?.({ ok: true });
      }
    });

    socket.on('language_change', (p, ack) => {
      if (!s) return ack?.({ ok: false, error: { code: 'not_joined', message: 'join first' } });
      s.language = p.language;
      ack?.({ ok: true });
      socket.to(s.code).emit('language_updated', { language: p.language, user_id: me.user_id });
    });

    socket.on('execute_code', (p, ack) => {
      if (!s) return ack?.({ ok: false, error: { code: 'not_joined', message: 'join first' } });
      // PROTOCOL.md: the ack carries the run's id; the result goes to everyone, the sender included.
      // Here the ack goes first; duet broadcasts first: the client must match by id either way.
      const id = randomUUID();
      ack?.({ ok: true, id });
      io.to(s.code).emit('execution_result', { id, user_id: me.user_id, user_name: me.name, ...p, created_at: new Date().toISOString() });
    });

    socket.on('disconnect', () => {
      if (!s || !me) return;
      s.members.delete(socket.id);
      const gone = [...me.clients].filter((c) => s.awareness.getStates().has(c));
      if (gone.length) {
        awarenessProtocol.removeAwarenessStates(s.awareness, gone, 'left');
        const enc = encoding.createEncoder();
        encoding.writeVarUint(enc, 1);
        encoding.writeVarUint8Array(enc, awarenessProtocol.encodeAwarenessUpdate(s.awareness, gone));
        io.to(s.code).emit('yjs', encoding.toUint8Array(enc));
      }
      io.to(s.code).emit('user_left', { user_id: me.user_id, name: me.name, count: participants(s).length, participants: participants(s) });
    });
  });

  return {
    url: web.url,
    ctl,
    sessions,
    createSession,
    text: (code) => sessions.get(code)?.doc.getText('code').toString(),
    /** Simulates a crash: every connection cut, new ones refused until `start()`. */
    async stop() {
      ctl.down = true;
      for (const sock of sockets) sock.destroy();
    },
    async start() {
      ctl.down = false;
    },
    async close() {
      for (const s of sessions.values()) {
        s.awareness.destroy(); // its renewal interval would keep the test process alive
        s.doc.destroy();
      }
      io.close();
      for (const sock of sockets) sock.destroy();
      await web.close();
    },
  };
}

function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
