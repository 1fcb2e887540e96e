// The hub under hostile and faulty input, against the real all-in-one `duet` binary, with the real
// socket.io-client and y-protocols: crafted updates, another participant's client id, awareness
// that is not JSON, NUL characters, floods of tiny structs, and a disk that fills up.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, openSync, writeSync, closeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { io } from 'socket.io-client';
import * as Y from 'yjs';
import * as awarenessProtocol from 'y-protocols/awareness';
import * as encoding from 'lib0/encoding';
import * as decoding from 'lib0/decoding';
import { DuetServer } from './browser/duet-server.js';
import { CollabClient, sleep, until } from './collab/client.mjs';
import { chain, crafted, updateMessage } from './collab/crafted.mjs';

async function createInterview(url) {
  const res = await fetch(`${url}/api/session`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ language: 'python', title: 'hostile' }),
  });
  assert.equal(res.status, 201);
  const body = await res.json();
  return body.session_code ?? body.code;
}

/** The current text over REST (the field is `code` once the seed's names are used, else `text`). */
async function restText(url, code) {
  const body = await (await fetch(`${url}/api/session/${code}`)).json();
  return 'session_code' in body ? body.code : body.text;
}

/** A raw socket that has joined an interview as a Yjs client. */
async function rawJoin(url, code, name = 'raw') {
  const socket = io(url, { transports: ['websocket'], forceNew: true, reconnection: false });
  const errors = [];
  const received = [];
  socket.on('error', (e) => errors.push(e));
  socket.on('yjs', (buf) => received.push(new Uint8Array(buf)));
  const ack = await socket.timeout(5000).emitWithAck('join_session', { session_code: code, name, yjs: true });
  assert.equal(ack.ok, true, JSON.stringify(ack));
  return { socket, errors, received, ack };
}

async function emitYjs(socket, bytes) {
  return socket.timeout(10000).emitWithAck('yjs', bytes);
}

function rssKb(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)[1]);
}

describe('the hub under hostile input (real duet binary)', () => {
  let server;
  before(async () => {
    server = await new DuetServer().start();
  });
  after(async () => {
    await server?.close();
  });

  test('a message lost between the hub and a participant (a proxy died holding it): the client asks again and catches up', async () => {
    const code = await createInterview(server.url);
    // Drops the next sync update (message 0, sync type 2) it is armed for, as a gateway killed
    // while holding a long-poll response loses it: the socket stays up, so no rejoin repairs it.
    const dropper = () => {
      const d = { armed: false, dropped: 0 };
      d.drop = (bytes) => {
        if (d.armed && bytes[0] === 0 && bytes[1] === 2) {
          d.armed = false;
          d.dropped++;
          return true;
        }
        return false;
      };
      return d;
    };
    const da = dropper();
    const a = new CollabClient(server.url, { code, name: 'A', drop: da.drop });
    const b = new CollabClient(server.url, { code, name: 'B' });
    // The browser client's own connection module, under Node, with the same fault.
    const Yf = await import('../../frontend/node_modules/yjs/dist/yjs.mjs');
    const { Awareness } = await import('../../frontend/node_modules/y-protocols/awareness.js');
    const { DuetConnection } = await import('../../frontend/src/connection.js');
    const doc = new Yf.Doc();
    const awareness = new Awareness(doc);
    const conn = new DuetConnection({ sessionCode: code, name: 'C', userId: undefined, doc, awareness, url: server.url, socketOptions: { transports: ['websocket'] } });
    const dc = dropper();
    const deliver = conn._onYjsMessage.bind(conn);
    conn._onYjsMessage = (data) => {
      if (!dc.drop(new Uint8Array(data))) deliver(data);
    };
    conn.connect();
    const cText = () => doc.getText('code').toString();
    try {
      assert.ok(await until(() => a.synced && b.synced && conn.synced, 5000));
      b.text.insert(0, 'one ');
      assert.ok(await until(() => a.value === 'one ' && cText() === 'one ', 5000));
      da.armed = true;
      dc.armed = true;
      b.text.insert(4, 'two ');
      assert.ok(await until(() => da.dropped === 1 && dc.dropped === 1 && b.saved, 5000), 'the update was dropped on the way to A and C');
      assert.equal(a.value, 'one ');
      // The next update depends on the lost one: both clients see the gap and ask for what they lack.
      b.text.insert(8, 'three');
      assert.ok(await until(() => a.value === 'one two three', 5000), `A: ${JSON.stringify(a.value)}`);
      assert.ok(await until(() => cText() === 'one two three', 5000), `C: ${JSON.stringify(cText())}`);
      assert.ok(a.gapRequests >= 1);
      assert.equal(a.hasGap, false);
      assert.equal(conn.hasGap, false);
      // And both keep editing normally afterwards.
      a.text.insert(0, '> ');
      doc.getText('code').insert(doc.getText('code').length, '!');
      assert.ok(await until(() => b.value === '> one two three!' && a.value === b.value && cText() === b.value, 5000), b.value);
    } finally {
      conn.destroy();
      awareness.destroy();
      a.close();
      b.close();
    }
  });

  test('an update whose clocks cross 2^32 is refused; the text is the same live and after a restart', async () => {
    const code = await createInterview(server.url);
    const a = new CollabClient(server.url, { code, name: 'A' });
    await until(() => a.synced, 5000);
    a.text.insert(0, 'BASE AFTER');
    assert.ok(await until(() => a.saved, 5000));
    const raw = await rawJoin(server.url, code);
    const r1 = await emitYjs(raw.socket, updateMessage(crafted([[4242, 2 ** 32 - 2, 'hello']])));
    assert.equal(r1.ok, false);
    assert.equal(r1.error.code, 'invalid_update');
    const r2 = await emitYjs(raw.socket, updateMessage(crafted([[4243, 2 ** 40, 'hello']])));
    assert.equal(r2.error.code, 'invalid_update');
    raw.socket.disconnect();
    a.close();
    await server.stop('SIGTERM');
    await server.start();
    const b = new CollabClient(server.url, { code, name: 'B' });
    assert.ok(await until(() => b.synced && b.value === 'BASE AFTER', 5000), `after restart: ${JSON.stringify(b.value)}`);
    b.close();
  });

  test("an update under another participant's client id is refused; the victim's edit is stored", async () => {
    const code = await createInterview(server.url);
    const victim = new CollabClient(server.url, { code, name: 'Victim' });
    await until(() => victim.synced, 5000);
    victim.text.insert(0, 'mine ');
    assert.ok(await until(() => victim.saved, 5000));
    const mallory = await rawJoin(server.url, code, 'Mallory');
    const next = Y.decodeStateVector(Y.encodeStateVector(victim.doc)).get(victim.doc.clientID) ?? 0;
    const r = await emitYjs(mallory.socket, updateMessage(crafted([[victim.doc.clientID, next, 'EVIL']])));
    assert.equal(r.ok, false);
    assert.equal(r.error.code, 'invalid_update');
    victim.text.insert(5, 'also mine');
    assert.ok(await until(() => victim.saved, 5000));
    const check = new CollabClient(server.url, { code, name: 'Check' });
    assert.ok(await until(() => check.synced && check.value === 'mine also mine', 5000), check.value);
    for (const c of [victim, check]) c.close();
    mallory.socket.disconnect();
  });

  test('awareness that is not JSON is refused; later joiners decode everything they receive', async () => {
    const code = await createInterview(server.url);
    const mallory = await rawJoin(server.url, code, 'Mallory');
    const enc = encoding.createEncoder();
    encoding.writeVarUint(enc, 1);
    const body = encoding.createEncoder();
    encoding.writeVarUint(body, 1);
    encoding.writeVarUint(body, 777);
    encoding.writeVarUint(body, 1);
    encoding.writeVarString(body, '{"user": nope');
    encoding.writeVarUint8Array(enc, encoding.toUint8Array(body));
    const r = await emitYjs(mallory.socket, encoding.toUint8Array(enc));
    assert.equal(r.error.code, 'invalid_update');
    const late = await rawJoin(server.url, code, 'Late');
    const step1 = encoding.createEncoder();
    encoding.writeVarUint(step1, 0);
    encoding.writeVarUint(step1, 0);
    encoding.writeVarUint8Array(step1, Y.encodeStateVector(new Y.Doc()));
    await emitYjs(late.socket, encoding.toUint8Array(step1));
    await sleep(200);
    const probe = new awarenessProtocol.Awareness(new Y.Doc());
    for (const buf of late.received) {
      const dec = decoding.createDecoder(buf);
      if (decoding.readVarUint(dec) === 1) {
        awarenessProtocol.applyAwarenessUpdate(probe, decoding.readVarUint8Array(dec), 'server'); // throws on bad JSON
      }
    }
    assert.equal(probe.getStates().has(777), false);
    probe.destroy(); // its timer would keep the test process alive
    for (const s of [mallory.socket, late.socket]) s.disconnect();
  });

  test('NUL characters: typed refusals, nothing stored, other interviews unaffected', async () => {
    const code = await createInterview(server.url);
    const seed = io(server.url, { transports: ['websocket'], forceNew: true, reconnection: false });
    const joined = await seed.timeout(5000).emitWithAck('join_session', { session_code: code, name: 'Seed' });
    assert.equal(joined.ok, true);
    const r1 = await seed.timeout(5000).emitWithAck('code_change', { code: 'a\u0000b' });
    assert.equal(r1.error.code, 'invalid_payload');
    const r2 = await seed.timeout(5000).emitWithAck('execute_code', { output: 'x\u0000y' });
    assert.equal(r2.error.code, 'invalid_payload');
    const raw = await rawJoin(server.url, code);
    const r3 = await emitYjs(raw.socket, updateMessage(crafted([[31337, 0, 'a\u0000b']])));
    assert.equal(r3.error.code, 'invalid_update');
    const runs = await (await fetch(`${server.url}/api/session/${code}/runs`)).json();
    assert.deepEqual(runs.runs, []);
    // A second interview saves its text meanwhile (text saves are batched across interviews).
    const other = await createInterview(server.url);
    const c = new CollabClient(server.url, { code: other, name: 'C' });
    await until(() => c.synced, 5000);
    c.text.insert(0, 'fine');
    assert.ok(await until(() => c.saved, 5000));
    let text;
    for (let i = 0; i < 50 && text !== 'fine'; i++) {
      text = await restText(server.url, other);
      await sleep(100);
    }
    assert.equal(text, 'fine');
    seed.disconnect();
    raw.socket.disconnect();
    c.close();
  });

  test('floods of tiny structs are refused before they cost memory', async () => {
    const code = await createInterview(server.url);
    const raw = await rawJoin(server.url, code, 'Flood');
    const before = rssKb(server.child.pid);
    const codes = [];
    let client = 1_000_000;
    // 40 messages of ~500 KB of one-character structs (20 MB).
    for (let m = 0; m < 40; m++) {
      const structs = [];
      for (let i = 0; i < 11_000; i++) structs.push([client++, 0, 'x']);
      const r = await emitYjs(raw.socket, updateMessage(crafted(structs)));
      codes.push(r.ok ? 'ok' : r.error.code);
    }
    assert.ok(codes.every((c) => c === 'payload_too_large'), codes.join());
    // Under the per-message cap, the document's cap stops it.
    for (let m = 0; m < 10; m++) {
      const r = await raw.socket.timeout(60000).emitWithAck('yjs', updateMessage(chain(client++, 9_000)));
      codes.push(r.ok ? 'ok' : r.error.code);
      if (!r.ok) break;
    }
    assert.ok(codes.includes('document_too_large'), codes.slice(40).join());
    const grown = rssKb(server.child.pid) - before;
    assert.ok(grown < 200 * 1024, `the process grew by ${grown} KB`);
    raw.socket.disconnect();
  });
});

describe('a full disk under the all-in-one database', () => {
  let mountDir;
  let mounted = false;
  let server;
  before(async () => {
    mountDir = mkdtempSync(path.join(os.tmpdir(), 'duet-full-'));
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', mountDir], { stdio: 'ignore' });
      mounted = true;
    } catch {
      mounted = false;
    }
  });
  after(async () => {
    await server?.stop('SIGKILL');
    if (mounted) execFileSync('umount', ['-l', mountDir], { stdio: 'ignore' });
    rmSync(mountDir, { recursive: true, force: true });
  });

  test('edits wait unacknowledged while the disk is full and are stored once there is room', async (t) => {
    if (!mounted) {
      t.skip('cannot mount a small tmpfs here (needs root); skipped');
      return;
    }
    const dataDir = path.join(mountDir, 'data');
    mkdirSync(dataDir);
    server = await new DuetServer({ dataDir }).start();
    const code = await createInterview(server.url);
    const other = await createInterview(server.url);
    const a = new CollabClient(server.url, { code, name: 'A' });
    await until(() => a.synced, 5000);
    a.text.insert(0, 'before ');
    assert.ok(await until(() => a.saved, 5000));
    // Fill the disk.
    const filler = path.join(mountDir, 'filler');
    const fd = openSync(filler, 'w');
    const chunk = Buffer.alloc(64 * 1024, 1);
    try {
      for (;;) writeSync(fd, chunk);
    } catch {
      /* ENOSPC */
    }
    try {
      for (;;) writeSync(fd, Buffer.alloc(512, 1));
    } catch {
      /* full to the last block */
    }
    closeSync(fd);
    for (let i = 0; i < 20; i++) a.text.insert(a.text.length, `${i} `);
    assert.ok(await until(() => a.errors.some((e) => e?.code === 'unavailable'), 10000), JSON.stringify(a.errors));
    assert.ok(a.pending > 0, 'edits stay unacknowledged');
    assert.ok(!a.errors.some((e) => e?.code === 'internal'), 'the interview is not closed');
    // The hub still answers: health checks and a join to another interview.
    const health = await fetch(`${server.url}/healthz`, { signal: AbortSignal.timeout(2000) });
    assert.equal(health.status, 200);
    const b = new CollabClient(server.url, { code: other, name: 'B' });
    assert.ok(await until(() => b.joined, 5000), 'a join is answered while the disk is full');
    // Room again: everything is stored by itself, no reconnect needed.
    rmSync(filler);
    assert.ok(await until(() => a.saved, 20000), `acks resume (pending ${a.pending})`);
    const expected = a.value;
    a.close();
    b.close();
    await server.stop('SIGKILL');
    await server.start();
    const c = new CollabClient(server.url, { code, name: 'C' });
    assert.ok(await until(() => c.synced && c.value === expected, 5000), `${c.value} vs ${expected}`);
    c.close();
  });
});
