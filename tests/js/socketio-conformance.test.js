// The Engine.IO v4 and Socket.IO v5 protocol test suites (engine.io-protocol and socket.io-protocol,
// section "Test suite") run against Duet's conformance server
// (`cargo run -p duet-socketio --example conformance`): raw HTTP requests and raw WebSocket frames,
// checked byte for byte. Ported to node:test; the server is built if missing and started on a free port.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import WebSocket from 'ws';

const ROOT = process.env.DUET_REPO || path.resolve(import.meta.dirname, '..', '..');
const BIN = path.join(ROOT, 'target', 'debug', 'examples', 'conformance');
const PING_INTERVAL = 300;
const PING_TIMEOUT = 200;
// The suites wait PING_INTERVAL + PING_TIMEOUT + 10 ms before checking that a silent session is
// gone; this port allows a little more, because CI machines here are shared and timers slip.
const SLACK = 60;

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

async function startServer() {
  if (!existsSync(BIN)) {
    const r = spawnSync('cargo', ['build', '-p', 'duet-socketio', '--example', 'conformance'], { cwd: ROOT, stdio: 'inherit' });
    if (r.status !== 0) throw new Error('could not build the conformance example');
  }
  const port = await freePort();
  const child = spawn(BIN, ['--port', String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes('listening on')) resolve();
    });
    child.on('exit', (code) => reject(new Error(`conformance server exited with ${code}`)));
  });
  return { port, child };
}

let server;
let URL;
let WS_URL;
before(async () => {
  server = await startServer();
  URL = `http://127.0.0.1:${server.port}`;
  WS_URL = URL.replace('http', 'ws');
});
after(() => server?.child.kill());

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * A WebSocket the server must close (a second one for a session): the handshake is accepted, no error
 * event fires, and the server closes it with 1008.
 */
async function assertAcceptedThenClosed(url) {
  const second = new Ws(url);
  await second.waitClose();
  assert.equal(second.error, null, `no error event (a refused handshake is one): ${second.error}`);
  assert.ok(second.didOpen, 'the handshake was accepted');
  assert.equal(second.closeCode, 1008);
}

/**
 * A raw WebSocket that queues every event, so none is missed between two awaits. (The upstream suites'
 * `waitFor(socket, 'message')` attaches a one-shot listener per await: when two packets arrive in the
 * same TCP segment, `ws` emits both in one tick and the second is lost before the next listener exists.)
 */
class Ws {
  constructor(url) {
    this.ws = new WebSocket(url);
    this.ws.binaryType = 'arraybuffer';
    this.queue = [];
    this.waiters = [];
    this.closed = false;
    this.didOpen = false;
    this.error = null;
    this.closeCode = null;
    this.opened = new Promise((resolve) => this.ws.on('open', () => { this.didOpen = true; resolve(); }));
    // The upstream suites attach no 'error' listener: in Node an unexpected handshake answer (a 400)
    // is then an uncaught error, so a WebSocket the server must close has to be accepted first.
    this.ws.on('error', (e) => { this.error = e; });
    this.ws.on('close', (code) => { this.closeCode = code; });
    this.ws.on('message', (data, isBinary) => this.push(isBinary ? new Uint8Array(data) : data.toString()));
    this.closedP = new Promise((resolve) => this.ws.on('close', () => { this.closed = true; resolve(); }));
  }
  push(m) {
    const w = this.waiters.shift();
    if (w) w(m);
    else this.queue.push(m);
  }
  next(timeoutMs = 2000) {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no message in time')), timeoutMs);
      this.waiters.push((m) => { clearTimeout(t); resolve(m); });
    });
  }
  /** Next message that is not an Engine.IO ping. */
  async nextData() {
    for (;;) {
      const m = await this.next();
      if (m !== '2') return m;
    }
  }
  send(m) { this.ws.send(m); }
  close() { this.ws.close(); }
  waitClose(timeoutMs = 3000) {
    return Promise.race([this.closedP, sleep(timeoutMs).then(() => { throw new Error('not closed in time'); })]);
  }
}

describe('Engine.IO protocol (raw echo at /engine.io/)', () => {
  const eio = () => `${URL}/engine.io/?EIO=4&transport=polling`;
  async function initLongPollingSession() {
    const res = await fetch(eio());
    const content = await res.text();
    return JSON.parse(content.substring(1)).sid;
  }

  describe('handshake', () => {
    it('HTTP long-polling: successfully opens a session', async () => {
      const res = await fetch(eio());
      assert.equal(res.status, 200);
      const content = await res.text();
      assert.ok(content.startsWith('0'));
      const value = JSON.parse(content.substring(1));
      assert.deepEqual(Object.keys(value).sort(), ['maxPayload', 'pingInterval', 'pingTimeout', 'sid', 'upgrades']);
      assert.equal(typeof value.sid, 'string');
      assert.deepEqual(value.upgrades, ['websocket']);
      assert.equal(value.pingInterval, PING_INTERVAL);
      assert.equal(value.pingTimeout, PING_TIMEOUT);
      assert.equal(value.maxPayload, 1000000);
    });
    it("HTTP long-polling: fails with an invalid 'EIO' query parameter", async () => {
      assert.equal((await fetch(`${URL}/engine.io/?transport=polling`)).status, 400);
      assert.equal((await fetch(`${URL}/engine.io/?EIO=abc&transport=polling`)).status, 400);
    });
    it("HTTP long-polling: fails with an invalid 'transport' query parameter", async () => {
      assert.equal((await fetch(`${URL}/engine.io/?EIO=4`)).status, 400);
      assert.equal((await fetch(`${URL}/engine.io/?EIO=4&transport=abc`)).status, 400);
    });
    it('HTTP long-polling: fails with an invalid request method', async () => {
      assert.equal((await fetch(eio(), { method: 'post' })).status, 400);
      assert.equal((await fetch(eio(), { method: 'put' })).status, 400);
    });
    it('WebSocket: successfully opens a session', async () => {
      const s = new Ws(`${WS_URL}/engine.io/?EIO=4&transport=websocket`);
      const data = await s.next();
      assert.ok(data.startsWith('0'));
      const value = JSON.parse(data.substring(1));
      assert.deepEqual(value.upgrades, []);
      assert.equal(value.pingInterval, PING_INTERVAL);
      assert.equal(value.pingTimeout, PING_TIMEOUT);
      assert.equal(value.maxPayload, 1000000);
      s.close();
    });
    it("WebSocket: fails with an invalid 'EIO' or 'transport' query parameter", async () => {
      for (const q of ['transport=websocket', 'EIO=abc&transport=websocket', 'EIO=4', 'EIO=4&transport=abc']) {
        await new Ws(`${WS_URL}/engine.io/?${q}`).waitClose();
      }
    });
  });

  describe('message', () => {
    it('HTTP long-polling: one plain text packet', async () => {
      const sid = await initLongPollingSession();
      const push = await fetch(`${eio()}&sid=${sid}`, { method: 'post', body: '4hello' });
      assert.equal(push.status, 200);
      assert.equal(await push.text(), 'ok');
      const poll = await fetch(`${eio()}&sid=${sid}`);
      assert.equal(poll.status, 200);
      assert.equal(await poll.text(), '4hello');
    });
    it('HTTP long-polling: several plain text packets', async () => {
      const sid = await initLongPollingSession();
      const push = await fetch(`${eio()}&sid=${sid}`, { method: 'post', body: '4test1\x1e4test2\x1e4test3' });
      assert.equal(await push.text(), 'ok');
      const poll = await fetch(`${eio()}&sid=${sid}`);
      assert.equal(await poll.text(), '4test1\x1e4test2\x1e4test3');
    });
    it('HTTP long-polling: plain text and binary packets', async () => {
      const sid = await initLongPollingSession();
      const push = await fetch(`${eio()}&sid=${sid}`, { method: 'post', body: '4hello\x1ebAQIDBA==' });
      assert.equal(await push.text(), 'ok');
      const poll = await fetch(`${eio()}&sid=${sid}`);
      assert.equal(await poll.text(), '4hello\x1ebAQIDBA==');
    });
    it('HTTP long-polling: closes the session upon invalid packet format', async () => {
      const sid = await initLongPollingSession();
      const push = await fetch(`${eio()}&sid=${sid}`, { method: 'post', body: 'abc' });
      assert.equal(push.status, 400);
      assert.equal((await fetch(`${eio()}&sid=${sid}`)).status, 400);
    });
    it('HTTP long-polling: closes the session upon duplicate poll requests', async () => {
      const sid = await initLongPollingSession();
      const [r1, r2] = await Promise.all([
        fetch(`${eio()}&sid=${sid}`),
        sleep(50).then(() => fetch(`${eio()}&sid=${sid}&t=burst`)),
      ]);
      assert.equal(r1.status, 200);
      assert.equal(await r1.text(), '1');
      assert.equal(r2.status, 400);
      assert.equal((await fetch(`${eio()}&sid=${sid}`)).status, 400);
    });
    it('HTTP long-polling: closes the session upon cancelled polling request', async () => {
      const sid = await initLongPollingSession();
      const controller = new AbortController();
      fetch(`${eio()}&sid=${sid}`, { signal: controller.signal }).catch(() => {});
      await sleep(20);
      controller.abort();
      await sleep(50);
      assert.equal((await fetch(`${eio()}&sid=${sid}`)).status, 400);
    });
    it('WebSocket: plain text packet', async () => {
      const s = new Ws(`${WS_URL}/engine.io/?EIO=4&transport=websocket`);
      await s.next();
      s.send('4hello');
      assert.equal(await s.nextData(), '4hello');
      s.close();
    });
    it('WebSocket: binary packet', async () => {
      const s = new Ws(`${WS_URL}/engine.io/?EIO=4&transport=websocket`);
      await s.next();
      s.send(Uint8Array.from([1, 2, 3, 4]));
      assert.deepEqual(await s.nextData(), Uint8Array.from([1, 2, 3, 4]));
      s.close();
    });
    it('WebSocket: closes the session upon invalid packet format', async () => {
      const s = new Ws(`${WS_URL}/engine.io/?EIO=4&transport=websocket`);
      await s.next();
      s.send('abc');
      await s.waitClose();
    });
  });

  describe('heartbeat', () => {
    it('HTTP long-polling: sends ping/pong packets', async () => {
      const sid = await initLongPollingSession();
      for (let i = 0; i < 3; i++) {
        const poll = await fetch(`${eio()}&sid=${sid}`);
        assert.equal(await poll.text(), '2');
        const push = await fetch(`${eio()}&sid=${sid}`, { method: 'post', body: '3' });
        assert.equal(push.status, 200);
      }
    });
    it('HTTP long-polling: closes the session upon ping timeout', async () => {
      const sid = await initLongPollingSession();
      await sleep(PING_INTERVAL + PING_TIMEOUT + SLACK);
      assert.equal((await fetch(`${eio()}&sid=${sid}`)).status, 400);
    });
    it('WebSocket: sends ping/pong packets', async () => {
      const s = new Ws(`${WS_URL}/engine.io/?EIO=4&transport=websocket`);
      await s.next();
      for (let i = 0; i < 3; i++) {
        assert.equal(await s.next(), '2');
        s.send('3');
      }
      s.close();
    });
    it('WebSocket: closes the session upon ping timeout', async () => {
      const s = new Ws(`${WS_URL}/engine.io/?EIO=4&transport=websocket`);
      await s.waitClose();
    });
  });

  describe('close', () => {
    it('HTTP long-polling: forcefully closes the session', async () => {
      const sid = await initLongPollingSession();
      // The GET must be pending before the close arrives: sent together, the POST can win the race
      // and the GET then (rightly) finds the session gone.
      const pending = fetch(`${eio()}&sid=${sid}`);
      await sleep(100);
      const [poll] = await Promise.all([
        pending,
        fetch(`${eio()}&sid=${sid}`, { method: 'post', body: '1' }),
      ]);
      assert.equal(poll.status, 200);
      assert.equal(await poll.text(), '6');
      assert.equal((await fetch(`${eio()}&sid=${sid}`)).status, 400);
    });
    it('WebSocket: forcefully closes the session', async () => {
      const s = new Ws(`${WS_URL}/engine.io/?EIO=4&transport=websocket`);
      await s.next();
      s.send('1');
      await s.waitClose();
    });
  });

  describe('upgrade', () => {
    it('successfully upgrades from HTTP long-polling to WebSocket', async () => {
      const sid = await initLongPollingSession();
      const s = new Ws(`${WS_URL}/engine.io/?EIO=4&transport=websocket&sid=${sid}`);
      await s.opened;
      s.send('2probe');
      assert.equal(await s.next(), '3probe');
      const poll = await fetch(`${eio()}&sid=${sid}`);
      assert.equal(poll.status, 200);
      assert.equal(await poll.text(), '6');
      s.send('5');
      s.send('4hello');
      assert.equal(await s.nextData(), '4hello');
      s.close();
    });
    it('ignores HTTP requests with same sid after upgrade', async () => {
      const sid = await initLongPollingSession();
      const s = new Ws(`${WS_URL}/engine.io/?EIO=4&transport=websocket&sid=${sid}`);
      await s.opened;
      s.send('2probe');
      assert.equal(await s.next(), '3probe');
      s.send('5');
      await sleep(20);
      assert.equal((await fetch(`${eio()}&sid=${sid}`)).status, 400);
      s.send('4hello');
      assert.equal(await s.nextData(), '4hello');
      s.close();
    });
    it('ignores WebSocket connection with same sid after upgrade', async () => {
      const sid = await initLongPollingSession();
      const s = new Ws(`${WS_URL}/engine.io/?EIO=4&transport=websocket&sid=${sid}`);
      await s.opened;
      s.send('2probe');
      assert.equal(await s.next(), '3probe');
      s.send('5');
      await sleep(20);
      await assertAcceptedThenClosed(`${WS_URL}/engine.io/?EIO=4&transport=websocket&sid=${sid}`);
      s.send('4hello');
      assert.equal(await s.nextData(), '4hello');
      s.close();
    });
    it('ignores WebSocket connection with same sid after upgrade (upstream order: probe and upgrade at once)', async () => {
      const sid = await initLongPollingSession();
      const s = new Ws(`${WS_URL}/engine.io/?EIO=4&transport=websocket&sid=${sid}`);
      await s.opened;
      s.send('2probe');
      s.send('5');
      await assertAcceptedThenClosed(`${WS_URL}/engine.io/?EIO=4&transport=websocket&sid=${sid}`);
      s.send('4hello');
      assert.equal(await s.next(), '3probe');
      assert.equal(await s.nextData(), '4hello');
      s.close();
    });
    it('closes a second WebSocket that arrives while the first is probing', async () => {
      const sid = await initLongPollingSession();
      const s = new Ws(`${WS_URL}/engine.io/?EIO=4&transport=websocket&sid=${sid}`);
      await s.opened;
      s.send('2probe');
      assert.equal(await s.next(), '3probe');
      await assertAcceptedThenClosed(`${WS_URL}/engine.io/?EIO=4&transport=websocket&sid=${sid}`);
      s.send('5');
      s.send('4hello');
      assert.equal(await s.nextData(), '4hello');
      s.close();
    });
  });
});

describe('Socket.IO protocol (conformance namespaces at /socket.io/)', () => {
  const sio = () => `${URL}/socket.io/?EIO=4&transport=polling`;
  const wsUrl = () => `${WS_URL}/socket.io/?EIO=4&transport=websocket`;
  async function initSocketIOConnection() {
    const s = new Ws(wsUrl());
    await s.next(); // Engine.IO handshake
    s.send('40');
    await s.nextData(); // Socket.IO handshake
    await s.nextData(); // "auth" packet
    return s;
  }

  it('Engine.IO handshake over polling and websocket', async () => {
    const res = await fetch(sio());
    const value = JSON.parse((await res.text()).substring(1));
    assert.deepEqual(value.upgrades, ['websocket']);
    assert.equal((await fetch(`${URL}/socket.io/?EIO=abc&transport=polling`)).status, 400);
    assert.equal((await fetch(`${URL}/socket.io/?EIO=4&transport=abc`)).status, 400);
    assert.equal((await fetch(sio(), { method: 'put' })).status, 400);
  });

  it('heartbeat over polling, then ping timeout', async () => {
    let sid = JSON.parse((await (await fetch(sio())).text()).substring(1)).sid;
    for (let i = 0; i < 3; i++) {
      assert.equal(await (await fetch(`${sio()}&sid=${sid}`)).text(), '2');
      assert.equal((await fetch(`${sio()}&sid=${sid}`, { method: 'post', body: '3' })).status, 200);
    }
    sid = JSON.parse((await (await fetch(sio())).text()).substring(1)).sid;
    await sleep(PING_INTERVAL + PING_TIMEOUT + SLACK);
    assert.equal((await fetch(`${sio()}&sid=${sid}`)).status, 400);
  });

  it('forcefully closes a polling session, and upgrades', async () => {
    let sid = JSON.parse((await (await fetch(sio())).text()).substring(1)).sid;
    // The close must reach the server while the GET is pending (the upstream suite fires both at once
    // and relies on the GET arriving first, which a loaded machine does not guarantee).
    const pollPromise = fetch(`${sio()}&sid=${sid}`);
    await sleep(100);
    const close = await fetch(`${sio()}&sid=${sid}`, { method: 'post', body: '1' });
    assert.equal(close.status, 200);
    const poll = await pollPromise;
    assert.equal(await poll.text(), '6');
    assert.equal((await fetch(`${sio()}&sid=${sid}`)).status, 400);

    sid = JSON.parse((await (await fetch(sio())).text()).substring(1)).sid;
    const s = new Ws(`${wsUrl()}&sid=${sid}`);
    await s.opened;
    s.send('2probe');
    assert.equal(await s.next(), '3probe');
    s.send('5');
    await sleep(20);
    assert.equal((await fetch(`${sio()}&sid=${sid}`)).status, 400);
    await assertAcceptedThenClosed(`${wsUrl()}&sid=${sid}`);
    s.close();
  });

  describe('connect', () => {
    it('should allow connection to the main namespace', async () => {
      const s = new Ws(wsUrl());
      await s.next();
      s.send('40');
      const data = await s.nextData();
      assert.ok(data.startsWith('40'));
      const handshake = JSON.parse(data.substring(2));
      assert.deepEqual(Object.keys(handshake), ['sid']);
      assert.equal(typeof handshake.sid, 'string');
      assert.equal(await s.nextData(), '42["auth",{}]');
      s.close();
    });
    it('should allow connection to the main namespace with a payload', async () => {
      const s = new Ws(wsUrl());
      await s.next();
      s.send('40{"token":"123"}');
      assert.ok((await s.nextData()).startsWith('40'));
      assert.equal(await s.nextData(), '42["auth",{"token":"123"}]');
      s.close();
    });
    it('should allow connection to a custom namespace', async () => {
      const s = new Ws(wsUrl());
      await s.next();
      s.send('40/custom,');
      const data = await s.nextData();
      assert.ok(data.startsWith('40/custom,'));
      assert.deepEqual(Object.keys(JSON.parse(data.substring(10))), ['sid']);
      assert.equal(await s.nextData(), '42/custom,["auth",{}]');
      s.close();
    });
    it('should allow connection to a custom namespace with a payload', async () => {
      const s = new Ws(wsUrl());
      await s.next();
      s.send('40/custom,{"token":"abc"}');
      assert.ok((await s.nextData()).startsWith('40/custom,'));
      assert.equal(await s.nextData(), '42/custom,["auth",{"token":"abc"}]');
      s.close();
    });
    it('should disallow connection to an unknown namespace', async () => {
      const s = new Ws(wsUrl());
      await s.next();
      s.send('40/random');
      assert.equal(await s.nextData(), '44/random,{"message":"Invalid namespace"}');
      s.close();
    });
    it('should disallow connection with an invalid handshake', async () => {
      const s = new Ws(wsUrl());
      await s.next();
      s.send('4abc');
      await s.waitClose();
    });
    it('should close the connection if no handshake is received', async () => {
      const s = new Ws(wsUrl());
      await s.next();
      // Answer pings, so that only the connect timeout (1000 ms) can close it.
      s.ws.on('message', (d) => { if (d.toString() === '2') s.send('3'); });
      const t0 = Date.now();
      await s.waitClose(3000);
      assert.ok(Date.now() - t0 >= 900, 'closed by the connect timeout');
    });
  });

  describe('disconnect', () => {
    it('should disconnect from the main namespace', async () => {
      const s = await initSocketIOConnection();
      s.send('41');
      assert.equal(await s.next(), '2');
      s.close();
    });
    it('should connect then disconnect from a custom namespace', async () => {
      const s = await initSocketIOConnection();
      s.send('40/custom');
      await s.nextData();
      await s.nextData();
      s.send('41/custom');
      s.send('42["message","message to main namespace"]');
      assert.equal(await s.nextData(), '42["message-back","message to main namespace"]');
      s.close();
    });
  });

  describe('message', () => {
    it('should send a plain-text packet', async () => {
      const s = await initSocketIOConnection();
      s.send('42["message",1,"2",{"3":[true]}]');
      assert.equal(await s.nextData(), '42["message-back",1,"2",{"3":[true]}]');
      s.close();
    });
    it('should send a packet with binary attachments', async () => {
      const s = await initSocketIOConnection();
      s.send('452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
      s.send(Uint8Array.from([1, 2, 3]));
      s.send(Uint8Array.from([4, 5, 6]));
      assert.equal(await s.nextData(), '452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
      assert.deepEqual(await s.nextData(), Uint8Array.from([1, 2, 3]));
      assert.deepEqual(await s.nextData(), Uint8Array.from([4, 5, 6]));
      s.close();
    });
    it('should send a plain-text packet with an ack', async () => {
      const s = await initSocketIOConnection();
      s.send('42456["message-with-ack",1,"2",{"3":[false]}]');
      assert.equal(await s.nextData(), '43456[1,"2",{"3":[false]}]');
      s.close();
    });
    it('should send a packet with binary attachments and an ack', async () => {
      const s = await initSocketIOConnection();
      s.send('452-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
      s.send(Uint8Array.from([1, 2, 3]));
      s.send(Uint8Array.from([4, 5, 6]));
      assert.equal(await s.nextData(), '462-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
      assert.deepEqual(await s.nextData(), Uint8Array.from([1, 2, 3]));
      assert.deepEqual(await s.nextData(), Uint8Array.from([4, 5, 6]));
      s.close();
    });
    it('should close the connection upon invalid format (unknown packet type)', async () => {
      const s = await initSocketIOConnection();
      s.send('4abc');
      await s.waitClose();
    });
    it('should close the connection upon invalid format (invalid payload format)', async () => {
      const s = await initSocketIOConnection();
      s.send('42{}');
      await s.waitClose();
    });
    it('should close the connection upon invalid format (invalid ack id)', async () => {
      const s = await initSocketIOConnection();
      s.send('42abc["message-with-ack",1,"2",{"3":[false]}]');
      await s.waitClose();
    });
  });
});
