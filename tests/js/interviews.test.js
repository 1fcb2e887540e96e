// Interviews, not just pads, against the real all-in-one `duet`: tokens and roles, the password, the
// lobby → live → ended lifecycle, the interviewer's controls and the private notes — enforced over
// the socket and over REST, with the real socket.io-client and Yjs. What a candidate connection is
// sent is recorded packet by packet, so "never sent" is asserted on bytes.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { DuetServer } from './browser/duet-server.js';
import { CollabClient, sleep, until } from './collab/client.mjs';
import { NotesClient, Recorder, createInterview, joinRest, rest } from './collab/interview.mjs';

const SECRET = 'hire? strong on recursion, weak on tests';

describe('interviews in duet', () => {
  let server;
  before(async () => {
    server = await new DuetServer().start();
  });
  after(async () => {
    await server?.close();
  });

  test('lobby → live → ended: roles enforced over the socket and REST, notes never reach a candidate', async () => {
    const url = server.url;
    const created = await createInterview(url, { lobby: true, password: 'open sesame' });
    const code = created.session_code;
    assert.equal(created.state, 'waiting');
    const link = new URL(created.links.interviewer);
    assert.equal(link.pathname, `/interview/${code}`);
    assert.equal(link.search, '', 'the token is not in the query');
    assert.equal(link.hash, `#token=${created.interviewer_token}`);

    // Joining: the password guards candidates; the interviewer link's token needs none.
    const wrong = await rest(url, 'POST', `/api/session/${code}/join`, { body: { name: 'Cara', password: 'nope' } });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.body.error.code, 'invalid_password');
    const cand = await joinRest(url, code, { name: 'Cara', password: 'open sesame' });
    assert.equal(cand.role, 'candidate');
    const int = await joinRest(url, code, { name: 'Ivan', bearer: created.interviewer_token });
    assert.equal(int.role, 'interviewer');
    // A socket without a token cannot join a passworded interview; a forged token is refused.
    const anon = await Recorder.join(url, code, { name: 'Anon' });
    assert.equal(anon.ack.ok, false);
    assert.equal(anon.ack.error.code, 'unauthorized');
    anon.close();
    const forged = await Recorder.join(url, code, { name: 'F', token: `${cand.token.slice(0, -4)}AAAA` });
    assert.equal(forged.ack.error.code, 'unauthorized');
    forged.close();

    const interviewer = new CollabClient(url, { code, name: 'Ivan', token: int.token });
    const spy = await Recorder.join(url, code, { name: 'Cara', token: cand.token });
    assert.equal(spy.ack.ok, true, JSON.stringify(spy.ack));
    assert.equal(spy.ack.role, 'candidate');
    assert.equal(spy.ack.user_id, cand.user_id, 'the user id is the token\'s');
    assert.equal(spy.ack.interview_state.state, 'waiting');
    const candidate = new CollabClient(url, { code, name: 'Cara', token: cand.token });
    try {
      assert.ok(await until(() => interviewer.synced && candidate.synced, 5000));
      assert.equal(interviewer.joinAck.role, 'interviewer');

      // The interviewer prepares code and notes in the lobby; the candidate cannot edit yet.
      interviewer.text.insert(0, 'def solve():\n');
      const notes = new NotesClient(interviewer.socket);
      assert.equal((await notes.sync()).ok, true);
      notes.text.insert(0, SECRET);
      assert.equal((await notes.saved(1))[0].ok, true);
      assert.ok(await until(() => candidate.value === 'def solve():\n', 5000));
      candidate.text.insert(0, '# early\n');
      assert.ok(await until(() => candidate.errors.some((e) => e?.code === 'interview_not_started'), 5000), JSON.stringify(candidate.errors));

      // A candidate cannot start it, over the socket or REST; can't read or write the notes.
      assert.equal((await spy.emit('start_interview', {})).error.code, 'forbidden');
      const r1 = await rest(url, 'POST', `/api/session/${code}/start`, { token: cand.token });
      assert.equal(r1.status, 403);
      const r0 = await rest(url, 'POST', `/api/session/${code}/start`);
      assert.equal(r0.status, 401);
      const peek = new NotesClient(spy.socket);
      assert.equal((await peek.sync()).error.code, 'forbidden');
      for (const [event, payload] of [['end_interview', {}], ['set_controls', { editing_locked: true }], ['remove_participant', { user_id: int.user_id }]]) {
        assert.equal((await spy.emit(event, payload)).error.code, 'forbidden', event);
      }

      // The interviewer starts it over REST: every participant hears it on the socket.
      const started = await rest(url, 'POST', `/api/session/${code}/start`, { token: int.token });
      assert.equal(started.status, 200, JSON.stringify(started.body));
      assert.equal(started.body.state, 'live');
      assert.ok(await until(() => spy.events.some(([e, [p]]) => e === 'interview_state' && p.state === 'live'), 5000));

      // Live: the candidate's fresh edit is accepted; lock it over the socket, and it is refused.
      const fresh = new CollabClient(url, { code, name: 'Cara', token: cand.token });
      assert.ok(await until(() => fresh.synced, 5000));
      fresh.text.insert(fresh.value.length, '    return 42\n');
      assert.ok(await until(() => fresh.saved && interviewer.value.includes('return 42'), 5000), interviewer.value);
      const locked = await interviewer.socket.timeout(5000).emitWithAck('set_controls', { editing_locked: true });
      assert.equal(locked.ok, true);
      assert.equal(locked.interview_state.editing_locked, true);
      await sleep(100);
      fresh.text.insert(0, '# locked?\n');
      assert.ok(await until(() => fresh.errors.some((e) => e?.code === 'editing_locked'), 5000), JSON.stringify(fresh.errors));

      // The end, over REST: read-only for everyone, nothing more stored.
      const ended = await rest(url, 'POST', `/api/session/${code}/end`, { token: int.token });
      assert.equal(ended.body.state, 'ended');
      assert.ok(await until(() => spy.events.some(([e, [p]]) => e === 'interview_state' && p.state === 'ended'), 5000));
      await sleep(1500);
      const before = (await rest(url, 'GET', `/api/session/${code}`)).body.code;
      interviewer.text.insert(0, '# after the end\n');
      assert.ok(await until(() => interviewer.errors.some((e) => e?.code === 'interview_ended'), 5000), JSON.stringify(interviewer.errors));
      await sleep(1500);
      assert.equal((await rest(url, 'GET', `/api/session/${code}`)).body.code, before);
      const again = await rest(url, 'POST', `/api/session/${code}/start`, { token: int.token });
      assert.equal(again.status, 409);

      // Not one byte of the notes reached the candidate's connection.
      await sleep(200);
      const got = spy.received();
      assert.ok(spy.packets.length > 5, 'the recorder did receive the interview');
      assert.ok(!got.includes('recursion'), 'a candidate connection received the notes');
      assert.ok(got.includes('solve'), 'but it did receive the code');
      fresh.close();
    } finally {
      interviewer.close();
      candidate.close();
      spy.close();
    }
  });

  test('removing a participant: disconnected, and their token no longer joins', async () => {
    const url = server.url;
    const created = await createInterview(url);
    const code = created.session_code;
    assert.equal(created.state, 'live');
    const cand = await joinRest(url, code, { name: 'Cara' });
    const int = await joinRest(url, code, { name: 'Ivan', bearer: created.interviewer_token });
    const victim = await Recorder.join(url, code, { name: 'Cara', token: cand.token });
    const boss = await Recorder.join(url, code, { name: 'Ivan', token: int.token });
    // Without a token (a seed-era client), joining works as a candidate while there is no password,
    // but not under the candidate's token-bound user id.
    const seed = await Recorder.join(url, code, { name: 'Old', yjs: false });
    assert.equal(seed.ack.role, 'candidate');
    const imp = await Recorder.join(url, code, { name: 'Cara?', yjs: false });
    assert.notEqual(imp.ack.user_id, cand.user_id);
    try {
      const r = await boss.emit('remove_participant', { user_id: cand.user_id });
      assert.equal(r.ok, true, JSON.stringify(r));
      assert.ok(await until(() => !victim.socket.connected, 5000), 'the removed participant was disconnected');
      assert.ok(victim.events.some(([e, [p]]) => e === 'error' && p.code === 'removed'));
      const back = await Recorder.join(url, code, { name: 'Cara', token: cand.token });
      assert.equal(back.ack.error.code, 'removed');
      back.close();
      const viaRest = await rest(url, 'POST', `/api/session/${code}/end`, { token: cand.token });
      assert.ok([401, 403].includes(viaRest.status), String(viaRest.status));
    } finally {
      for (const c of [victim, boss, seed, imp]) c.close();
    }
  });

  test("a page of another site cannot open a Socket.IO session; the server's own pages can", async () => {
    const handshake = (origin) =>
      new Promise((resolve, reject) => {
        const u = new URL(`${server.url}/socket.io/?EIO=4&transport=polling`);
        const headers = origin ? { origin } : {};
        http.get(u, { headers }, (res) => {
          res.resume();
          resolve(res.statusCode);
        }).on('error', reject);
      });
    assert.equal(await handshake('https://evil.example'), 403);
    assert.equal(await handshake(new URL(server.url).origin.replace('127.0.0.1', 'localhost')), 403);
    assert.equal(await handshake(new URL(server.url).origin), 200);
    assert.equal(await handshake(null), 200, 'clients that send no Origin (not a browser) are unaffected');
  });

  test('pages carry a Content-Security-Policy; the HTML preview has a sandboxed policy of its own', async () => {
    const created = await createInterview(server.url);
    for (const path of ['/', `/interview/${created.session_code}`, '/interview/ZZZZ2222']) {
      const res = await fetch(`${server.url}${path}`);
      const csp = res.headers.get('content-security-policy') ?? '';
      assert.match(csp, /script-src 'self'(;|$)/, `${path}: ${csp}`);
      assert.match(csp, /frame-ancestors 'none'/, path);
      assert.match(csp, /connect-src 'self'/, path);
      assert.doesNotMatch(csp, /script-src[^;]*unsafe-inline/, path);
      assert.equal(res.headers.get('x-frame-options'), 'DENY', path);
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff', path);
      assert.equal(res.headers.get('referrer-policy'), 'same-origin', path);
    }
    const preview = await fetch(`${server.url}/preview`);
    assert.equal(preview.status, 200);
    const csp = preview.headers.get('content-security-policy') ?? '';
    assert.match(csp, /^sandbox allow-scripts;/, csp);
    assert.match(csp, /frame-ancestors 'self'/, csp);
    assert.equal(preview.headers.get('x-frame-options'), null, 'Duet frames its own preview');
  });
});
