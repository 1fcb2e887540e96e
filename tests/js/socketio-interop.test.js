// Interoperability of Duet's Socket.IO server (shared/socketio, example `interop`) with the real
// socket.io-client 4.x from npm: websocket-only, polling-only and polling-then-upgrade; connect
// with auth; JSON and binary payloads; acks both ways; rooms; a server-initiated disconnect; and
// reconnection after the server process restarts. The server binary is built if missing and
// started on a free port by the test itself.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { io } from 'socket.io-client';

const ROOT = process.env.DUET_REPO || path.resolve(import.meta.dirname, '..', '..');
const BIN = path.join(ROOT, 'target', 'debug', 'examples', 'interop');

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

class Server {
  async start(port) {
    if (!existsSync(BIN)) {
      const r = spawnSync('cargo', ['build', '-p', 'duet-socketio', '--example', 'interop'], { cwd: ROOT, stdio: 'inherit' });
      if (r.status !== 0) throw new Error('could not build the interop example');
    }
    this.port = port ?? this.port ?? (await freePort());
    this.url = `http://127.0.0.1:${this.port}`;
    this.child = spawn(BIN, ['--port', String(this.port)], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise((resolve, reject) => {
      let out = '';
      this.child.stdout.on('data', (d) => {
        out += d;
        if (out.includes('listening on')) resolve();
      });
      this.child.once('exit', (code) => reject(new Error(`interop server exited with ${code}`)));
    });
  }
  async stop() {
    if (!this.child || this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGKILL');
    await exited;
  }
}

const server = new Server();
before(() => server.start());
after(() => server.stop());

const once = (emitter, event, ms = 3000) =>
  new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no '${event}' within ${ms} ms`)), ms);
    emitter.once(event, (...args) => {
      clearTimeout(t);
      resolve(args);
    });
  });

function connect(opts = {}, nsp = '/') {
  const socket = io(`${server.url}${nsp}`, { reconnection: false, forceNew: true, ...opts });
  return socket;
}

const VARIANTS = [
  { name: 'websocket-only', opts: { transports: ['websocket'] }, final: 'websocket' },
  { name: 'polling-only', opts: { transports: ['polling'] }, final: 'polling' },
  { name: 'polling then upgrade', opts: {}, final: 'websocket' },
];

for (const v of VARIANTS) {
  describe(`socket.io-client over ${v.name}`, () => {
    it('connects with auth and gets the welcome event', async () => {
      const socket = connect({ ...v.opts, auth: { token: 'abc', n: 1 } });
      const [welcome] = await once(socket, 'welcome');
      assert.equal(welcome.id, socket.id);
      assert.deepEqual(welcome.auth, { token: 'abc', n: 1 });
      if (v.final === 'websocket' && socket.io.engine.transport.name !== 'websocket') {
        await once(socket.io.engine, 'upgrade');
      }
      assert.equal(socket.io.engine.transport.name, v.final);
      socket.disconnect();
    });

    it('echoes JSON and binary payloads', async () => {
      const socket = connect(v.opts);
      await once(socket, 'connect');
      socket.emit('echo', { a: [1, 'two', null], 'é': 'ü€' }, 42, 'str');
      const args = await once(socket, 'echo');
      assert.deepEqual(args, [{ a: [1, 'two', null], 'é': 'ü€' }, 42, 'str']);

      const bin = Buffer.from([0, 1, 2, 253, 254, 255]);
      socket.emit('echo', 'bin', bin, { nested: Buffer.from('xyz') });
      const [label, b1, obj] = await once(socket, 'echo');
      assert.equal(label, 'bin');
      assert.deepEqual(Buffer.from(b1), bin);
      assert.deepEqual(Buffer.from(obj.nested), Buffer.from('xyz'));
      socket.disconnect();
    });

    it('acks both ways', async () => {
      const socket = connect(v.opts);
      await once(socket, 'connect');
      // client → server, server acks with the same arguments (one binary)
      const res = await socket.timeout(3000).emitWithAck('echo-ack', 'x', Buffer.from([9, 8]));
      assert.equal(res, 'x');
      // server → client: the server asks, we answer, it forwards our answer in its ack
      socket.on('question', (q, cb) => cb({ answer: q.n * 2 }, Buffer.from([7])));
      const [answer, bin] = await new Promise((resolve) => socket.emit('ask', { n: 21 }, (...a) => resolve(a)));
      assert.deepEqual(answer, { answer: 42 });
      assert.deepEqual(Buffer.from(bin), Buffer.from([7]));
      socket.disconnect();
    });
  });
}

describe('socket.io-client: rooms, namespaces, disconnects', () => {
  it('broadcasts to a room except the sender, with binary, across transports', async () => {
    const a = connect({ transports: ['websocket'] });
    const b = connect({ transports: ['polling'] });
    const c = connect({});
    await Promise.all([once(a, 'connect'), once(b, 'connect'), once(c, 'connect')]);
    assert.equal(await a.emitWithAck('join', 'r1'), 1);
    assert.equal(await b.emitWithAck('join', 'r1'), 2);
    assert.equal(await c.emitWithAck('join', 'r2'), 1);
    let cGot = false;
    c.on('room-message', () => { cGot = true; });
    let aGot = false;
    a.on('room-message', () => { aGot = true; });
    const got = once(b, 'room-message');
    const n = await a.emitWithAck('to-room', 'r1', 'hello', Buffer.from([1, 2, 3]));
    assert.equal(n, 1);
    const [msg, bin] = await got;
    assert.equal(msg, 'hello');
    assert.deepEqual(Buffer.from(bin), Buffer.from([1, 2, 3]));
    assert.equal(await b.emitWithAck('leave', 'r1'), 1);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(cGot, false);
    assert.equal(aGot, false);
    a.disconnect();
    b.disconnect();
    c.disconnect();
  });

  it('connects to a custom namespace over the same connection', async () => {
    const manager = connect({ transports: ['websocket'] }).io;
    const main = manager.socket('/');
    const admin = manager.socket('/admin');
    main.connect();
    admin.connect();
    const [[w1], [w2]] = await Promise.all([once(main, 'welcome'), once(admin, 'welcome')]);
    assert.equal(w2.ns, '/admin');
    assert.ok(w1.id && w2.id && w1.id !== w2.id);
    main.disconnect();
    admin.disconnect();
  });

  it('reports an unknown namespace as a connect_error', async () => {
    const socket = connect({ transports: ['websocket'] }, '/nope');
    const [err] = await once(socket, 'connect_error');
    assert.equal(err.message, 'Invalid namespace');
    socket.disconnect();
  });

  it('server-initiated disconnect reaches the client as "io server disconnect"', async () => {
    for (const opts of [{ transports: ['websocket'] }, { transports: ['polling'] }]) {
      const socket = connect(opts);
      await once(socket, 'connect');
      socket.emit('disconnect-me');
      const [reason] = await once(socket, 'disconnect');
      assert.equal(reason, 'io server disconnect');
    }
  });

  it('reconnects after the server process restarts', async () => {
    for (const opts of [{ transports: ['websocket'] }, {}]) {
      const socket = io(server.url, { ...opts, forceNew: true, reconnectionDelay: 100, reconnectionDelayMax: 300 });
      await once(socket, 'connect');
      const firstId = socket.id;
      const dropped = once(socket, 'disconnect', 5000);
      await server.stop();
      const [reason] = await dropped;
      assert.ok(['transport close', 'transport error', 'ping timeout'].includes(reason), reason);
      await server.start();
      await once(socket, 'connect', 10000);
      assert.notEqual(socket.id, firstId);
      const res = await socket.timeout(3000).emitWithAck('echo-ack', 'after restart');
      assert.equal(res, 'after restart');
      socket.disconnect();
    }
  });
});
