// The editor page's session model (frontend/src/session-model.js) under plain Node: a fake connection
// emits what the real one emits (connection.js forwards the server's events with these names and
// payloads, docs/PROTOCOL.md) and answers requests when the test says so; fake runners stand in for
// the browser's Web Workers. The same model runs in the browser tests against the real server.
//
// At the end, the connection itself (frontend/src/connection.js) over a fake socket: its two documents
// (the code on `yjs`, the interviewers' notes on `notes`), each with its own unsaved edits and state.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as Y from '../../frontend/node_modules/yjs/dist/yjs.mjs';
import { Awareness as YAwareness } from '../../frontend/node_modules/y-protocols/awareness.js';
import * as syncProtocol from '../../frontend/node_modules/y-protocols/sync.js';
import * as encoding from '../../frontend/node_modules/lib0/encoding.js';
import { createDecoder as decodingOf } from '../../frontend/node_modules/lib0/decoding.js';
import { ACTIVITY_RATE, MAX_AWAITED_ECHOES, MAX_RUNS, SessionModel } from '../../frontend/src/session-model.js';
import { DuetConnection } from '../../frontend/src/connection.js';
import { Emitter } from '../../frontend/src/emitter.js';

/** Every awareness made here: each runs an interval until destroyed, which would keep Node running. */
const awarenesses = [];
class Awareness extends YAwareness {
  constructor(doc) {
    super(doc);
    awarenesses.push(this);
  }
}
after(() => {
  for (const a of awarenesses) a.destroy();
});

const ME = '11111111-1111-4111-8111-111111111111';
const ANN = '22222222-2222-4222-8222-222222222222';
const BEN = '33333333-3333-4333-8333-333333333333';

/** What the model needs of DuetConnection: lib0-style `on`, `request`, `status`, `synced`, `fatal`. */
class FakeConnection {
  constructor() {
    this.listeners = new Map();
    this.requests = [];
    this.status = { state: 'connecting', unsaved: 0, connected: false, online: true };
    this.synced = false;
    this.fatal = null;
    /** openNotes / replaceNotesDoc / closeNotes calls, in order: [name, doc?]. */
    this.notesCalls = [];
    this.notesStatus = null;
  }

  openNotes(doc, awareness) {
    this.notesCalls.push(['open', doc, awareness]);
    this.notesStatus = { state: 'syncing', unsaved: 0, connected: true, online: true };
  }

  replaceNotesDoc(doc, awareness) {
    this.notesCalls.push(['replace', doc, awareness]);
  }

  closeNotes() {
    this.notesCalls.push(['close']);
    this.notesStatus = null;
  }

  on(event, fn) {
    if (!this.listeners.has(event)) this.listeners.set(event, []);
    this.listeners.get(event).push(fn);
  }

  /** As the connection emits: one payload per event. */
  fire(event, payload) {
    for (const fn of this.listeners.get(event) ?? []) fn(payload);
  }

  request(event, payload) {
    return new Promise((resolve, reject) => this.requests.push({ event, payload, resolve, reject }));
  }

  /** The oldest unanswered request for `event`. */
  take(event) {
    const i = this.requests.findIndex((r) => r.event === event);
    assert.ok(i >= 0, `a ${event} request was made`);
    return this.requests.splice(i, 1)[0];
  }
}

/** A runner whose runs finish when the test says: `finish(result)`, output with `print`. */
class FakeRunner {
  constructor({ ready } = {}) {
    this.ready = ready;
    this.runs = [];
    this.stopped = 0;
  }

  run(source, { onOutput }) {
    return new Promise((resolve, reject) => {
      this.runs.push({ source, print: (stream, text) => onOutput({ stream, text }), finish: resolve, fail: reject });
    });
  }

  stop() {
    this.stopped++;
  }
}

/** The model's events, in order, as [type, payload]. */
function record(model) {
  const events = [];
  const types = [
    'status', 'joined', 'synced', 'fatal', 'server-error', 'self', 'participants', 'participant-joined',
    'participant-left', 'language', 'language-refused', 'role', 'lifecycle', 'running', 'run-added',
    'run-output', 'run-finished', 'run-shared', 'run-not-shared', 'runtime-progress', 'permissions',
    'control-refused', 'edit-refused', 'resynced', 'notes-open', 'notes-close', 'notes-status', 'notes-synced',
    'notes-edit-refused', 'notes-resynced', 'notes-permissions', 'activity',
  ];
  for (const t of types) model.on(t, (p) => events.push([t, p]));
  events.of = (type) => events.filter(([t]) => t === type).map(([, p]) => p);
  events.types = () => events.map(([t]) => t);
  events.clear = () => events.splice(0);
  return events;
}

const tick = () => new Promise((r) => setImmediate(r));

/** Notes documents as the page makes them (a Y.Doc and its awareness), remembered in `made`. */
function notesFactory() {
  const made = [];
  const create = () => {
    const doc = new Y.Doc();
    const n = { doc, awareness: new Awareness(doc) };
    made.push(n);
    return n;
  };
  return { create, made };
}

function setup({ language = 'javascript', source = 'console.log(1)', runners, notes = true } = {}) {
  const connection = new FakeConnection();
  const rs = runners ?? { javascript: new FakeRunner(), python: new FakeRunner({ ready: false }), html: new FakeRunner() };
  const factory = notesFactory();
  const model = new SessionModel({ connection, userId: ME, name: 'Me', language, runners: rs, source: () => source, createNotes: notes ? factory.create : null });
  const events = record(model);
  return { connection, model, events, runners: rs, made: factory.made };
}

function join(connection, extra = {}) {
  connection.fire('joined', {
    ok: true,
    user_id: ME,
    color: '#0090ff',
    language: 'javascript',
    participants: [
      { user_id: ANN, name: 'Ann', color: '#e5484d' },
      { user_id: ME, name: 'Me', color: '#0090ff' },
    ],
    ...extra,
  });
}

const result = (fields) => ({
  id: 'r-x',
  user_id: ANN,
  user_name: 'Ann',
  language: 'javascript',
  output: 'out\n',
  status: 'ok',
  duration_ms: 12,
  created_at: '2024-05-01T10:00:00Z',
  ...fields,
});

/** Runs code to the end in the model; returns the run and its execute_code request (unanswered). */
async function runToShare(model, connection, runner, { output = 'hi\n' } = {}) {
  const done = model.run();
  const r = runner.runs.at(-1);
  r.print('stdout', output);
  r.finish({ status: 'ok', output, duration_ms: 3 });
  await tick();
  return { done, request: connection.take('execute_code') };
}

describe('session model: identity, participants, presence', () => {
  test('before joining: this user alone, with the given name and id', () => {
    const { model } = setup();
    assert.deepEqual(model.self, { user_id: ME, name: 'Me', color: null });
    assert.deepEqual(model.participants, [{ user_id: ME, name: 'Me', color: null, self: true, away: false }]);
    assert.equal(model.language, 'javascript');
    assert.equal(model.role, null);
    assert.equal(model.lifecycle, null);
  });

  test('the join ack sets identity, colour, participants (this user first) and language; a second join is a rejoin', () => {
    const { connection, model, events } = setup();
    join(connection, { language: 'python' });
    assert.deepEqual(events.types(), ['self', 'participants', 'language', 'joined']);
    assert.deepEqual(events.of('self')[0], { user_id: ME, name: 'Me', color: '#0090ff' });
    assert.deepEqual(
      events.of('participants')[0].participants.map((p) => [p.user_id, p.name, p.self]),
      [
        [ME, 'Me', true],
        [ANN, 'Ann', false],
      ],
    );
    assert.deepEqual(events.of('language')[0], { language: 'python', previous: 'javascript', source: 'server', by: null });
    assert.deepEqual(events.of('joined')[0], { rejoin: false });
    events.clear();
    join(connection, { language: 'python' });
    assert.deepEqual(events.types(), ['participants', 'joined'], 'nothing changed but the list was re-sent');
    assert.deepEqual(events.of('joined')[0], { rejoin: true });
  });

  test('the server may assign another user id: the model takes it and says so', () => {
    const { connection, model, events } = setup();
    const other = '44444444-4444-4444-8444-444444444444';
    connection.fire('joined', { ok: true, user_id: other });
    assert.equal(model.self.user_id, other);
    assert.deepEqual(events.of('self'), [{ user_id: other, name: 'Me', color: null }]);
    assert.equal(events.of('participants').length, 1, 'the list is told again: who is "you" changed');
  });

  test('someone joining or leaving: list replaced and a notice; this user in another tab: list only', () => {
    const { connection, model, events } = setup();
    join(connection);
    events.clear();
    const list = [
      { user_id: ME, name: 'Me', color: '#0090ff' },
      { user_id: ANN, name: 'Ann', color: '#e5484d' },
      { user_id: BEN, name: 'Ben', color: '#30a46c' },
    ];
    connection.fire('user_joined', { user_id: BEN, name: 'Ben', participants: list });
    assert.deepEqual(events.types(), ['participants', 'participant-joined']);
    assert.deepEqual(events.of('participant-joined')[0], { user_id: BEN, name: 'Ben' });
    assert.equal(model.participants.length, 3);
    events.clear();
    connection.fire('user_joined', { user_id: ME, name: 'Me', participants: list }); // another tab of mine
    assert.deepEqual(events.types(), ['participants']);
    events.clear();
    connection.fire('user_left', { user_id: BEN, name: 'Ben', participants: list.slice(0, 2) });
    assert.deepEqual(events.types(), ['participants', 'participant-left']);
    assert.deepEqual(events.of('participant-left')[0], { user_id: BEN, name: 'Ben' });
    assert.deepEqual(model.participants.map((p) => p.name), ['Me', 'Ann']);
  });

  test('malformed presence is ignored, not thrown on', () => {
    const { connection, model, events } = setup();
    join(connection);
    events.clear();
    connection.fire('user_joined', null);
    connection.fire('user_left', 'nope');
    connection.fire('sync_code', null);
    connection.fire('user_joined', { user_id: BEN, participants: [null, 7, { name: 'no id' }, { user_id: BEN, name: null }] });
    assert.deepEqual(model.participants.map((p) => [p.user_id, p.name]), [[BEN, 'Anonymous']]);
    assert.deepEqual(events.of('participant-joined'), [{ user_id: BEN, name: null }]);
  });

  test('role from the join ack and lifecycle from interview_state, validated, told once per change', () => {
    const { connection, model, events } = setup();
    join(connection, { role: 'interviewer' });
    assert.equal(model.role, 'interviewer');
    assert.deepEqual(events.of('role'), [{ role: 'interviewer' }]);
    join(connection, { role: 'admin' }); // not a role: ignored
    assert.equal(model.role, 'interviewer');
    connection.fire('interview_state', { state: 'waiting' });
    connection.fire('interview_state', { state: 'waiting', started_at: null, ended_at: null, editing_locked: false, runs_enabled: true });
    connection.fire('interview_state', { state: 'live', started_at: '2024-05-01T10:00:00Z', ended_at: null });
    connection.fire('interview_state', { state: 'paused' });
    connection.fire('interview_state', null);
    connection.fire('interview_state', { state: 'live', started_at: '2024-05-01T10:00:00Z', ended_at: null, editing_locked: true, runs_enabled: true });
    connection.fire('interview_state', { state: 'ended', started_at: '2024-05-01T10:00:00Z', ended_at: '2024-05-01T11:00:00Z', editing_locked: true, runs_enabled: false });
    const waiting = { state: 'waiting', started_at: null, ended_at: null, editing_locked: false, runs_enabled: true };
    const live = { state: 'live', started_at: '2024-05-01T10:00:00Z', ended_at: null, editing_locked: false, runs_enabled: true };
    const locked = { ...live, editing_locked: true };
    const ended = { state: 'ended', started_at: '2024-05-01T10:00:00Z', ended_at: '2024-05-01T11:00:00Z', editing_locked: true, runs_enabled: false };
    assert.deepEqual(events.of('lifecycle'), [
      { ...waiting, previous: null },
      { ...live, previous: waiting },
      { ...locked, previous: live },
      { ...ended, previous: locked },
    ]);
    assert.deepEqual(model.lifecycle, ended);
  });
});

/** The interview's state as the hub sends it. */
const state = (st, fields = {}) => ({
  state: st,
  started_at: st === 'waiting' ? null : '2024-05-01T10:00:00Z',
  ended_at: st === 'ended' ? '2024-05-01T11:00:00Z' : null,
  editing_locked: false,
  runs_enabled: true,
  ...fields,
});

describe('session model: interviews (role, lifecycle, controls, refusals)', () => {
  test('the join ack carries the role and the state; the interview_state that follows it is not news', () => {
    const { connection, model, events } = setup();
    join(connection, { role: 'candidate', interview_state: state('waiting') });
    assert.equal(model.role, 'candidate');
    assert.equal(model.lifecycle.state, 'waiting');
    connection.fire('interview_state', state('waiting'));
    assert.equal(events.of('lifecycle').length, 1);
    // Role and lifecycle are known by the time `joined` is told.
    assert.deepEqual(events.types().filter((t) => ['role', 'lifecycle', 'joined'].includes(t)), ['role', 'lifecycle', 'joined']);
  });

  test('a server that sends no controls: editing open, runs on', () => {
    const { connection, model } = setup();
    connection.fire('interview_state', { state: 'live', started_at: '2024-05-01T10:00:00Z', ended_at: null });
    assert.equal(model.lifecycle.editing_locked, false);
    assert.equal(model.lifecycle.runs_enabled, true);
    connection.fire('interview_state', { state: 'live', started_at: 5, ended_at: {}, editing_locked: 'yes', runs_enabled: 0 });
    assert.deepEqual(model.lifecycle, { state: 'live', started_at: null, ended_at: null, editing_locked: false, runs_enabled: true });
  });

  test('permissions of a candidate: lobby while waiting; edit and run when live; locked; runs off; nothing once ended', () => {
    const { connection, model, events } = setup();
    join(connection, { role: 'candidate', interview_state: state('waiting') });
    connection.synced = true;
    connection.fire('synced');
    const p = () => model.permissions;
    assert.deepEqual(p(), { edit: false, editable: false, run: false, language: false, control: false, lobby: true, editReason: 'waiting', runReason: 'waiting' });
    connection.fire('interview_state', state('live'));
    assert.deepEqual(p(), { edit: true, editable: true, run: true, language: true, control: false, lobby: false, editReason: null, runReason: null });
    connection.fire('interview_state', state('live', { editing_locked: true }));
    assert.deepEqual(p(), { edit: false, editable: false, run: true, language: false, control: false, lobby: false, editReason: 'locked', runReason: null });
    connection.fire('interview_state', state('live', { editing_locked: true, runs_enabled: false }));
    assert.deepEqual(p(), { edit: false, editable: false, run: false, language: false, control: false, lobby: false, editReason: 'locked', runReason: 'runs_off' });
    connection.fire('interview_state', state('live', { runs_enabled: false }));
    assert.equal(p().edit, true);
    assert.equal(p().runReason, 'runs_off');
    connection.fire('interview_state', state('ended'));
    assert.deepEqual(p(), { edit: false, editable: false, run: false, language: false, control: false, lobby: false, editReason: 'ended', runReason: 'ended' });
    // `permissions` is told once per change, with the new value.
    const told = events.of('permissions');
    assert.deepEqual(told.at(-1), p());
    assert.equal(new Set(told.map((x) => JSON.stringify(x))).size, told.length, 'no repeats in a row');
    const before = told.length;
    connection.fire('interview_state', state('ended', { runs_enabled: true })); // changes nothing a candidate may do
    assert.equal(events.of('permissions').length, before);
  });

  test('permissions of an interviewer: edits while waiting, not bound by lock or runs off, controls; runs (unshared) after the end', () => {
    const { connection, model } = setup();
    join(connection, { role: 'interviewer', interview_state: state('waiting', { editing_locked: true, runs_enabled: false }) });
    assert.deepEqual(model.permissions, { edit: true, editable: false, run: true, language: true, control: true, lobby: false, editReason: null, runReason: null });
    connection.synced = true;
    connection.fire('synced');
    assert.equal(model.permissions.editable, true);
    connection.fire('interview_state', state('ended'));
    assert.deepEqual(model.permissions, { edit: false, editable: false, run: true, language: false, control: true, lobby: false, editReason: 'ended', runReason: null });
  });

  test('before the server says anything (or a server without roles and lifecycles): everything but the controls', () => {
    const { connection, model } = setup();
    assert.deepEqual(model.permissions, { edit: true, editable: false, run: true, language: true, control: false, lobby: false, editReason: null, runReason: null });
    join(connection);
    connection.fire('synced');
    assert.equal(model.permissions.editable, true);
    assert.equal(model.role, null);
    assert.equal(model.lifecycle, null);
  });

  test('a candidate cannot start a run while runs are off (nothing runs, nothing is sent)', async () => {
    const { connection, model, runners, events } = setup();
    join(connection, { role: 'candidate', interview_state: state('live', { runs_enabled: false }) });
    assert.equal(await Promise.race([model.run(), tick().then(() => 'still running')]), null);
    assert.equal(runners.javascript.runs.length, 0);
    assert.equal(events.of('run-added').length, 0);
    connection.fire('interview_state', state('live'));
    const done = model.run();
    assert.equal(runners.javascript.runs.length, 1);
    runners.javascript.runs[0].finish({ status: 'ok', output: '', duration_ms: 1 });
    await tick();
    connection.take('execute_code').resolve({ ok: true, id: 'r1' });
    await done;
  });

  test('after the end an interviewer\'s run is not sent to be shared (the server would refuse it)', async () => {
    const { connection, model, runners, events } = setup();
    join(connection, { role: 'interviewer', interview_state: state('ended') });
    const done = model.run();
    runners.javascript.runs[0].finish({ status: 'ok', output: 'x\n', duration_ms: 1 });
    const run = await done;
    assert.equal(connection.requests.length, 0);
    assert.equal(run.share, 'failed');
    assert.deepEqual(events.of('run-not-shared').map((e) => e.error.code), ['interview_ended']);
  });

  test('start and end: the events are sent; a forward step in the ack is applied at once, never a step back', async () => {
    const { connection, model, events } = setup();
    join(connection, { role: 'interviewer', interview_state: state('waiting') });
    const started = model.startInterview();
    const req = connection.take('start_interview');
    assert.deepEqual(req.payload, {});
    req.resolve({ ok: true, interview_state: state('live') });
    assert.deepEqual(await started, { ok: true });
    assert.equal(model.lifecycle.state, 'live');
    assert.equal(model.lifecycle.started_at, '2024-05-01T10:00:00Z');
    connection.fire('interview_state', state('live')); // everyone's broadcast, the sender's too
    assert.equal(events.of('lifecycle').length, 2, 'waiting, live');
    // A late ack with an older state does not move the page back.
    const again = model.startInterview();
    connection.fire('interview_state', state('ended'));
    connection.take('start_interview').resolve({ ok: true, interview_state: state('live') });
    await again;
    assert.equal(model.lifecycle.state, 'ended');
    const ended = model.endInterview();
    connection.take('end_interview').resolve({ ok: true, interview_state: state('ended') });
    assert.deepEqual(await ended, { ok: true });
  });

  test('controls and removal: only the fields given are sent; the controls follow the broadcast, not the ack', async () => {
    const { connection, model } = setup();
    join(connection, { role: 'interviewer', interview_state: state('live') });
    const set = model.setControls({ editing_locked: true, runs_enabled: 'no', extra: 1 });
    const req = connection.take('set_controls');
    assert.deepEqual(req.payload, { editing_locked: true });
    req.resolve({ ok: true, interview_state: state('live', { editing_locked: true }) });
    assert.deepEqual(await set, { ok: true });
    assert.equal(model.lifecycle.editing_locked, false, 'not from the ack');
    connection.fire('interview_state', state('live', { editing_locked: true }));
    assert.equal(model.lifecycle.editing_locked, true);
    model.setControls({ runs_enabled: false });
    assert.deepEqual(connection.take('set_controls').payload, { runs_enabled: false });
    model.removeParticipant(ANN);
    assert.deepEqual(connection.take('remove_participant').payload, { user_id: ANN });
  });

  test('a refused interviewer action resolves {ok: false} and is told as control-refused', async () => {
    const { connection, model, events } = setup();
    join(connection, { role: 'candidate', interview_state: state('live') });
    const res = model.endInterview();
    connection.take('end_interview').reject(Object.assign(new Error('only an interviewer can do that'), { code: 'forbidden' }));
    assert.deepEqual(await res, { ok: false, error: { code: 'forbidden', message: 'only an interviewer can do that' } });
    assert.deepEqual(events.of('control-refused'), [{ action: 'end', error: { code: 'forbidden', message: 'only an interviewer can do that' } }]);
    assert.equal(model.lifecycle.state, 'live');
  });

  test('a refused edit: told with its reason and the edits dropped; not editable until the document is loaded again', () => {
    const { connection, model, events } = setup();
    join(connection, { role: 'candidate', interview_state: state('live') });
    connection.synced = true;
    connection.fire('synced');
    assert.equal(model.permissions.editable, true);
    connection.fire('resynced'); // without a refusal: nothing to do
    assert.equal(events.of('resynced').length, 0);
    connection.fire('interview_state', state('live', { editing_locked: true }));
    connection.fire('edit-refused', { code: 'editing_locked', message: 'the interviewer has locked editing', dropped: 2 });
    assert.deepEqual(events.of('edit-refused'), [{ code: 'editing_locked', message: 'the interviewer has locked editing', dropped: 2 }]);
    assert.equal(model.resyncing, true);
    connection.fire('interview_state', state('live'));
    assert.equal(model.permissions.edit, true);
    assert.equal(model.permissions.editable, false, 'still loading the document again');
    connection.fire('resynced');
    assert.equal(model.resyncing, false);
    assert.equal(model.permissions.editable, true);
    assert.equal(events.of('resynced').length, 1);
    assert.equal(events.of('permissions').at(-1).editable, true);
  });

  test('a removed participant: the fatal error is passed on', () => {
    const { connection, model, events } = setup();
    join(connection, { role: 'candidate' });
    connection.fire('fatal', { code: 'removed', message: 'an interviewer removed you from this interview' });
    assert.equal(model.fatal.code, 'removed');
    assert.deepEqual(events.of('fatal'), [{ code: 'removed', message: 'an interviewer removed you from this interview' }]);
  });
});

describe('session model: connection state', () => {
  test('status, synced, fatal and server errors are passed on; status is read live from the connection', () => {
    const { connection, model, events } = setup();
    const st = { state: 'offline', unsaved: 3, connected: false, online: false };
    connection.status = st;
    connection.fire('status', st);
    assert.deepEqual(events.of('status'), [st]);
    assert.equal(model.status.unsaved, 3);
    assert.equal(model.synced, false);
    connection.fire('synced');
    assert.equal(model.synced, true);
    connection.fire('server-error', { code: 'rate_limited', message: 'Slow down.' });
    connection.fire('server-error', 'weird');
    assert.deepEqual(events.of('server-error'), [
      { code: 'rate_limited', message: 'Slow down.' },
      { code: 'error', message: 'weird' },
    ]);
    connection.fire('fatal', { code: 'session_not_found', message: 'No interview has this code.' });
    assert.deepEqual(model.fatal, { code: 'session_not_found', message: 'No interview has this code.' });
    assert.deepEqual(events.of('fatal'), [model.fatal]);
  });
});

describe('session model: language', () => {
  test('a local change is applied at once, sent, and reverted with a notice when refused', async () => {
    const { connection, model, events } = setup();
    join(connection);
    events.clear();
    model.changeLanguage('python');
    assert.equal(model.language, 'python');
    assert.deepEqual(events.of('language'), [
      { language: 'python', previous: 'javascript', source: 'local', by: { user_id: ME, name: 'Me', self: true } },
    ]);
    const req = connection.take('language_change');
    assert.deepEqual(req.payload, { language: 'python' });
    req.reject(Object.assign(new Error('Only the interviewer can do that.'), { code: 'forbidden' }));
    await tick();
    assert.equal(model.language, 'javascript');
    assert.deepEqual(events.types(), ['language', 'language-refused', 'language']);
    assert.deepEqual(events.of('language-refused')[0], {
      language: 'python',
      previous: 'javascript',
      error: { code: 'forbidden', message: 'Only the interviewer can do that.' },
    });
    assert.equal(events.of('language')[1].source, 'reverted');
  });

  test('an accepted change stays; unknown or unchanged languages are not sent', async () => {
    const { connection, model, events } = setup();
    join(connection);
    model.changeLanguage('html');
    connection.take('language_change').resolve({ ok: true, language: 'html' });
    await tick();
    assert.equal(model.language, 'html');
    events.clear();
    model.changeLanguage('html');
    model.changeLanguage('cobol');
    assert.equal(connection.requests.length, 0);
    assert.deepEqual(events.types(), []);
  });

  test('a remote change names who made it; an unchanged or unknown one is not news', () => {
    const { connection, model, events } = setup();
    join(connection);
    events.clear();
    connection.fire('language_updated', { language: 'python', user_id: ANN });
    connection.fire('language_updated', { language: 'python', user_id: ANN });
    connection.fire('language_updated', { language: 'brainfuck', user_id: ANN });
    connection.fire('language_updated', { user_id: ANN });
    connection.fire('language_updated', { language: 'html', user_id: ME }); // this user, another tab
    connection.fire('language_updated', { language: 'javascript', user_id: BEN }); // not in the list
    assert.deepEqual(events.of('language'), [
      { language: 'python', previous: 'javascript', source: 'remote', by: { user_id: ANN, name: 'Ann', self: false } },
      { language: 'html', previous: 'python', source: 'remote', by: { user_id: ME, name: 'Me', self: true } },
      { language: 'javascript', previous: 'html', source: 'remote', by: { user_id: BEN, name: null, self: false } },
    ]);
    assert.equal(model.language, 'javascript');
  });
});

describe('session model: runs', () => {
  test('a run: running, added, output, finished, not running, then shared with the id of the ack', async () => {
    const { connection, model, events, runners } = setup({ source: 'console.log("x")' });
    join(connection);
    events.clear();
    const done = model.run();
    assert.equal(model.running, true);
    assert.equal(runners.javascript.runs[0].source, 'console.log("x")');
    assert.equal(await model.run(), null, 'one run at a time');
    model.stop();
    assert.equal(runners.javascript.stopped, 1);
    const r = runners.javascript.runs[0];
    r.print('stdout', 'x\n');
    r.print('stderr', 'warn\n');
    r.finish({ status: 'ok', output: 'x\nwarn\n', duration_ms: 7 });
    await tick();
    assert.deepEqual(events.types(), ['running', 'run-added', 'run-output', 'run-output', 'run-finished', 'running']);
    const run = events.of('run-added')[0].run;
    assert.equal(run.local, true);
    assert.equal(run.user_name, 'Me');
    assert.equal(run.color, '#0090ff', 'this user\'s colour from the participant list');
    assert.deepEqual(events.of('run-output').map((e) => [e.stream, e.text]), [
      ['stdout', 'x\n'],
      ['stderr', 'warn\n'],
    ]);
    assert.deepEqual([run.status, run.output, run.duration_ms], ['ok', 'x\nwarn\n', 7]);
    assert.equal(model.running, false);
    const req = connection.take('execute_code');
    assert.deepEqual(req.payload, { language: 'javascript', output: 'x\nwarn\n', status: 'ok', duration_ms: 7 });
    assert.equal(run.share, 'pending');
    req.resolve({ ok: true, id: 'run-1' });
    assert.equal(await done, run);
    assert.equal(run.id, 'run-1');
    assert.equal(run.share, 'shared');
    assert.deepEqual(events.of('run-shared'), [{ run }]);
    events.clear();
    connection.fire('execution_result', result({ id: 'run-1', user_id: ME, user_name: 'Me', output: 'x\nwarn\n' }));
    assert.deepEqual(events.types(), [], 'its echo is not shown again');
    assert.equal(model.runs.length, 1);
  });

  test('the echo may come before the ack (duet broadcasts, then acks): held, then recognised by id', async () => {
    const { connection, model, events, runners } = setup();
    join(connection);
    const { done, request } = await runToShare(model, connection, runners.javascript);
    events.clear();
    connection.fire('execution_result', result({ id: 'run-1', user_id: ME, user_name: 'Me' }));
    assert.deepEqual(events.types(), [], 'not shown while our ack is on its way');
    request.resolve({ ok: true, id: 'run-1' });
    await done;
    assert.deepEqual(events.types(), ['run-shared']);
    assert.equal(model.runs.length, 1);
  });

  test('two tabs of one user: a run of the other tab is shown as such, ours keeps its own id (echo first)', async () => {
    const { connection, model, events, runners } = setup();
    join(connection);
    const { done, request } = await runToShare(model, connection, runners.javascript, { output: 'mine\n' });
    events.clear();
    // The other tab's run, same user id, arrives while our request is waiting; then our own echo.
    connection.fire('execution_result', result({ id: 'other-tab', user_id: ME, user_name: 'Me', output: 'theirs\n' }));
    connection.fire('execution_result', result({ id: 'mine', user_id: ME, user_name: 'Me', output: 'mine\n' }));
    assert.deepEqual(events.types(), []);
    request.resolve({ ok: true, id: 'mine' });
    const own = await done;
    assert.equal(own.id, 'mine');
    assert.deepEqual(events.types(), ['run-shared', 'run-added']);
    const theirs = events.of('run-added')[0].run;
    assert.deepEqual([theirs.local, theirs.mine, theirs.id, theirs.output, theirs.user_name], [false, true, 'other-tab', 'theirs\n', 'Me']);
  });

  test('two tabs of one user: the other tab\'s run arriving first does not take our run\'s place (ack first)', async () => {
    const { connection, model, events, runners } = setup();
    join(connection);
    const { done, request } = await runToShare(model, connection, runners.javascript, { output: 'mine\n' });
    events.clear();
    connection.fire('execution_result', result({ id: 'other-tab', user_id: ME, user_name: 'Me', output: 'theirs\n' }));
    request.resolve({ ok: true, id: 'mine' });
    const own = await done;
    connection.fire('execution_result', result({ id: 'mine', user_id: ME, user_name: 'Me', output: 'mine\n' }));
    assert.equal(own.id, 'mine');
    assert.deepEqual(events.types(), ['run-shared', 'run-added']);
    assert.equal(events.of('run-added')[0].run.id, 'other-tab');
    // With nothing of ours in flight, another tab's run is shown at once.
    events.clear();
    connection.fire('execution_result', result({ id: 'other-tab-2', user_id: ME, user_name: null, output: 'more\n' }));
    assert.deepEqual(events.of('run-added').map((e) => [e.run.mine, e.run.user_name]), [[true, null]]);
  });

  test('two runs of this page in flight, answered in the other order: each gets its own id', async () => {
    const { connection, model, events, runners } = setup();
    join(connection);
    const first = await runToShare(model, connection, runners.javascript, { output: 'one\n' });
    const second = await runToShare(model, connection, runners.javascript, { output: 'two\n' });
    events.clear();
    connection.fire('execution_result', result({ id: 'id-2', user_id: ME, output: 'two\n' }));
    connection.fire('execution_result', result({ id: 'id-1', user_id: ME, output: 'one\n' }));
    second.request.resolve({ ok: true, id: 'id-2' });
    first.request.resolve({ ok: true, id: 'id-1' });
    const [r1, r2] = await Promise.all([first.done, second.done]);
    assert.deepEqual([r1.output, r1.id, r2.output, r2.id], ['one\n', 'id-1', 'two\n', 'id-2']);
    assert.deepEqual(events.types(), ['run-shared', 'run-shared'], 'no echo shown as a run');
  });

  test('a share that fails is marked, and what was held meanwhile is shown', async () => {
    const { connection, model, events, runners } = setup();
    join(connection);
    const { done, request } = await runToShare(model, connection, runners.javascript);
    events.clear();
    connection.fire('execution_result', result({ id: 'other-tab', user_id: ME }));
    request.reject(Object.assign(new Error('Not connected'), { code: 'offline' }));
    const run = await done;
    assert.equal(run.share, 'failed');
    assert.deepEqual(events.types(), ['run-not-shared', 'run-added']);
    assert.deepEqual(events.of('run-not-shared')[0].error, { code: 'offline', message: 'Not connected' });
  });

  test('someone else\'s result: shown with their name and colour; bad fields made safe', () => {
    const { connection, model, events } = setup();
    join(connection);
    events.clear();
    connection.fire('execution_result', result({ id: 'a1' }));
    connection.fire('execution_result', result({ id: 'a2', user_name: undefined, status: 'exploded', created_at: 'not a date', output: null, duration_ms: '5' }));
    connection.fire('execution_result', result({ id: 'b1', user_id: BEN, user_name: undefined }));
    connection.fire('execution_result', null);
    connection.fire('execution_result', 'text');
    const runs = events.of('run-added').map((e) => e.run);
    assert.equal(runs.length, 3);
    assert.deepEqual([runs[0].local, runs[0].mine, runs[0].user_name, runs[0].color, runs[0].status, runs[0].duration_ms], [false, false, 'Ann', '#e5484d', 'ok', 12]);
    assert.equal(runs[0].created_at.toISOString(), '2024-05-01T10:00:00.000Z');
    assert.equal(runs[1].user_name, 'Ann', 'from the participant list when the result has no name');
    assert.equal(runs[1].status, 'error');
    assert.equal(runs[1].output, '');
    assert.equal(runs[1].duration_ms, null);
    assert.ok(!Number.isNaN(runs[1].created_at.getTime()));
    assert.deepEqual([runs[2].user_name, runs[2].color], [null, null], 'unknown person: the view says "Someone"');
    assert.deepEqual(model.runs.map((r) => r.id), ['a1', 'a2', 'b1']);
  });

  test('a runner that throws ends the run with an error; Python that is not loaded yet says so', async () => {
    const { connection, model, events, runners } = setup();
    join(connection);
    const done = model.run();
    runners.javascript.runs[0].fail(new Error('worker crashed'));
    await tick();
    const run = events.of('run-finished')[0].run;
    assert.deepEqual([run.status, run.output, run.duration_ms], ['error', 'worker crashed', 0]);
    assert.deepEqual(events.of('run-output').map((e) => [e.stream, e.text]), [['stderr', 'worker crashed\n']]);
    connection.take('execute_code').resolve({ ok: true, id: 'z' });
    await done;
    model.changeLanguage('python');
    model.run();
    assert.deepEqual(events.of('run-added').at(-1).run.notes, ['loading Python (first run only)']);
    model.reportLoadProgress('python', { phase: 'loading', loaded: 5, total: 10 });
    assert.deepEqual(events.of('runtime-progress'), [{ language: 'python', phase: 'loading', loaded: 5, total: 10 }]);
  });

  test('the model keeps the newest runs only, and forgets unclaimed echo ids beyond a bound', async () => {
    const { connection, model, runners } = setup();
    join(connection);
    for (let i = 0; i < MAX_RUNS + 5; i++) connection.fire('execution_result', result({ id: `r${i}` }));
    assert.equal(model.runs.length, MAX_RUNS);
    assert.equal(model.runs[0].id, 'r5');
    // Acks whose echo never comes (lost in a disconnect): only the newest ids are remembered, so the
    // oldest one's late echo is shown as another tab's run rather than kept for ever.
    for (let i = 0; i <= MAX_AWAITED_ECHOES; i++) {
      const { done, request } = await runToShare(model, connection, runners.javascript);
      request.resolve({ ok: true, id: `lost-${i}` });
      await done;
    }
    const before = model.runs.length;
    connection.fire('execution_result', result({ id: `lost-${MAX_AWAITED_ECHOES}`, user_id: ME }));
    assert.equal(model.runs.length, before, 'a remembered id is recognised');
    connection.fire('execution_result', result({ id: 'lost-0', user_id: ME }));
    assert.equal(model.runs.at(-1).id, 'lost-0');
  });
});

describe('session model: activity', () => {
  test('reported as `activity`: paste with its size and document, blur and focus; refusals only returned', async () => {
    const { connection, model, events } = setup();
    join(connection, { role: 'candidate', interview_state: state('live') });
    events.clear();
    const pasted = model.reportActivity('paste', { size: 312.7 });
    const r = connection.take('activity');
    assert.deepEqual(r.payload, { kind: 'paste', size: 312, doc: 'code' });
    r.resolve({ ok: true });
    assert.equal(await pasted, true);
    const left = model.reportActivity('blur', { size: 5, doc: 'notes' });
    const b = connection.take('activity');
    assert.deepEqual(b.payload, { kind: 'blur' }, 'no fields beyond the kind');
    b.reject(Object.assign(new Error('slow down'), { code: 'rate_limited' }));
    assert.equal(await left, false);
    model.reportActivity('paste', { size: 3, doc: 'notes' });
    assert.deepEqual(connection.take('activity').payload, { kind: 'paste', size: 3, doc: 'notes' });
    assert.equal(await model.reportActivity('typing'), false, 'an unknown kind is not sent');
    assert.deepEqual(events.types(), [], 'nothing for the views: a report is never shown');
    connection.fire('interview_state', state('ended'));
    assert.equal(await model.reportActivity('focus'), false, 'not sent once ended');
    assert.equal(connection.requests.length, 0);
  });

  test('reports beyond the client\'s own rate limit (under the server\'s) are not sent', async () => {
    const { connection, model } = setup();
    join(connection, { role: 'candidate', interview_state: state('live') });
    const sent = [];
    for (let i = 0; i < ACTIVITY_RATE.burst + 10; i++) sent.push(model.reportActivity('paste', { size: 1 }));
    assert.equal(connection.requests.length, ACTIVITY_RATE.burst, 'a burst, then nothing');
    for (const r of connection.requests.splice(0)) r.resolve({ ok: true });
    const results = await Promise.all(sent);
    assert.equal(results.filter(Boolean).length, ACTIVITY_RATE.burst);
  });

  test('others\' activity is passed on, and who left the page is marked away until back or gone', () => {
    const { connection, model, events } = setup();
    join(connection, { role: 'interviewer', interview_state: state('live') });
    events.clear();
    connection.fire('activity', { kind: 'paste', user_id: ANN, name: 'Ann', at: '2026-01-01T10:00:00Z', size: 312, doc: 'code' });
    assert.deepEqual(events.of('activity'), [{ kind: 'paste', user_id: ANN, name: 'Ann', at: '2026-01-01T10:00:00Z', size: 312, doc: 'code' }]);
    assert.deepEqual(events.types(), ['activity'], 'a paste does not change who is away');
    events.clear();
    connection.fire('activity', { kind: 'blur', user_id: ANN, name: 'Ann', at: '2026-01-01T10:00:01Z' });
    assert.deepEqual(events.types(), ['activity', 'participants']);
    assert.equal(model.participant(ANN) && model.participants.find((p) => p.user_id === ANN).away, true);
    events.clear();
    connection.fire('activity', { kind: 'blur', user_id: ANN, name: 'Ann' });
    assert.deepEqual(events.types(), ['activity'], 'still away: the list is not re-rendered');
    events.clear();
    connection.fire('activity', { kind: 'focus', user_id: ANN, name: 'Ann' });
    assert.deepEqual(events.types(), ['activity', 'participants']);
    assert.equal(model.participants.find((p) => p.user_id === ANN).away, false);
    connection.fire('activity', { kind: 'blur', user_id: ANN, name: 'Ann' });
    connection.fire('user_left', { user_id: ANN, name: 'Ann', participants: [{ user_id: ME, name: 'Me' }] });
    connection.fire('user_joined', { user_id: ANN, name: 'Ann', participants: [{ user_id: ME, name: 'Me' }, { user_id: ANN, name: 'Ann' }] });
    assert.equal(model.participants.find((p) => p.user_id === ANN).away, false, 'gone and back: not away');
    events.clear();
    for (const bad of [null, 'paste', { kind: 'typing', user_id: ANN }, { kind: 'paste' }, { kind: 'blur', user_id: 7 }]) {
      connection.fire('activity', bad);
    }
    assert.deepEqual(events.types(), [], 'malformed activity is ignored');
    connection.fire('activity', { kind: 'paste', user_id: BEN, size: 'lots' });
    assert.deepEqual(events.of('activity')[0], { kind: 'paste', user_id: BEN, name: null, at: null, size: null, doc: 'code' });
  });
});

describe('emitter', () => {
  test('a throwing listener does not stop the others; the error is rethrown from a microtask', async () => {
    const e = new Emitter();
    const seen = [];
    const errors = [];
    const original = globalThis.queueMicrotask;
    globalThis.queueMicrotask = (fn) => {
      try {
        fn();
      } catch (err) {
        errors.push(err.message);
      }
    };
    try {
      e.on('x', () => {
        throw new Error('view bug');
      });
      const off = e.on('x', (p) => seen.push(p));
      e.emit('x', 1);
      off();
      e.emit('x', 2);
    } finally {
      globalThis.queueMicrotask = original;
    }
    assert.deepEqual(seen, [1]);
    assert.deepEqual(errors, ['view bug', 'view bug']);
  });
});

describe('session model: the private notes', () => {
  const NO_NOTES = { view: false, edit: false, editable: false, editReason: null };

  test('a candidate, a role-less client, a server without lifecycles and a page without a notes factory never open the notes', () => {
    const cases = [
      [{ role: 'candidate', interview_state: state('live') }, true],
      [{}, true],
      [{ role: 'interviewer' }, true], // a server that predates interviews (the stand-in): it has no notes
      [{ role: 'interviewer', interview_state: state('live') }, false],
    ];
    for (const [extra, notes] of cases) {
      const { connection, model, events, made } = setup({ notes });
      join(connection, extra);
      connection.fire('joined', { ok: true, user_id: ME, ...extra }); // a rejoin changes nothing
      assert.deepEqual(connection.notesCalls, [], JSON.stringify(extra));
      assert.equal(made.length, 0, 'no notes document made');
      assert.equal(model.notes, null);
      assert.equal(model.notesStatus, null);
      assert.deepEqual(model.notesPermissions, NO_NOTES);
      // Notes events (none should come) are ignored.
      connection.fire('notes-synced');
      connection.fire('notes-status', { state: 'saved', unsaved: 0 });
      connection.fire('notes-edit-refused', { code: 'interview_ended', dropped: 1 });
      assert.deepEqual(events.types().filter((t) => t.startsWith('notes-')), []);
    }
  });

  test('an interviewer: the notes open on the join (once), with their own status; editable once loaded', () => {
    const { connection, model, events, made } = setup();
    assert.deepEqual(model.notesPermissions, NO_NOTES, 'nothing before the server says the role');
    let callsAtOpen = null;
    model.on('notes-open', () => {
      callsAtOpen = connection.notesCalls.length;
    });
    join(connection, { role: 'interviewer', interview_state: state('waiting') });
    assert.equal(callsAtOpen, 0, 'the view is told before the handshake starts (its awareness then has the name)');
    assert.equal(made.length, 1);
    assert.deepEqual(connection.notesCalls, [['open', made[0].doc, made[0].awareness]]);
    assert.equal(model.notes.doc, made[0].doc);
    const types = events.types();
    assert.ok(types.indexOf('notes-open') < types.indexOf('joined'), 'open before `joined` is told (the page then has the panel)');
    assert.deepEqual(events.of('notes-open'), [{ doc: made[0].doc, awareness: made[0].awareness }]);
    assert.deepEqual(model.notesPermissions, { view: true, edit: true, editable: false, editReason: null }, 'waiting: interviewers write notes');
    assert.deepEqual(model.notesStatus, { state: 'syncing', unsaved: 0, connected: true, online: true }, 'read from the connection');
    connection.fire('notes-synced');
    assert.deepEqual(model.notesPermissions, { view: true, edit: true, editable: true, editReason: null });
    assert.deepEqual(events.of('notes-permissions').at(-1), model.notesPermissions);
    connection.fire('notes-status', { state: 'saving', unsaved: 2, connected: true, online: true });
    assert.deepEqual(events.of('notes-status'), [{ state: 'saving', unsaved: 2, connected: true, online: true }]);
    // Reconnects: the same notes (the connection re-runs their handshake).
    connection.fire('joined', { ok: true, user_id: ME, role: 'interviewer' });
    assert.equal(connection.notesCalls.length, 1);
    assert.equal(events.of('notes-open').length, 1);
    // Live: still editable, not bound by the candidate's lock; ended: read-only.
    const told = events.of('notes-permissions').length;
    connection.fire('interview_state', state('live', { editing_locked: true }));
    assert.equal(model.notesPermissions.editable, true);
    assert.equal(events.of('notes-permissions').length, told, 'unchanged: not told again');
    connection.fire('interview_state', state('ended'));
    assert.deepEqual(model.notesPermissions, { view: true, edit: false, editable: false, editReason: 'ended' });
    assert.deepEqual(events.of('notes-permissions').at(-1), { view: true, edit: false, editable: false, editReason: 'ended' });
  });

  test('a refused notes edit: a fresh document replaces the old one, read-only until it is loaded again', () => {
    const { connection, model, events, made } = setup();
    join(connection, { role: 'interviewer', interview_state: state('live') });
    connection.fire('notes-synced');
    const old = made[0];
    let destroyed = false;
    old.doc.on('destroy', () => {
      destroyed = true;
    });
    events.clear();
    connection.fire('notes-edit-refused', { code: 'interview_ended', message: 'the interview has ended', dropped: 2 });
    assert.equal(made.length, 2);
    const next = made[1];
    assert.deepEqual(events.of('notes-edit-refused'), [{ code: 'interview_ended', message: 'the interview has ended', dropped: 2, doc: next.doc, awareness: next.awareness }]);
    assert.deepEqual(connection.notesCalls.at(-1), ['replace', next.doc, next.awareness]);
    assert.equal(model.notes.doc, next.doc);
    assert.ok(destroyed, 'the old document is destroyed');
    assert.equal(model.notesPermissions.editable, false, 'loading again');
    connection.fire('notes-resynced');
    assert.deepEqual(events.of('notes-resynced'), [{ doc: next.doc, awareness: next.awareness }]);
    assert.equal(model.notesPermissions.editable, true);
    connection.fire('notes-resynced'); // a second step 2 is no news
    assert.equal(events.of('notes-resynced').length, 1);
  });

  test('an interview_state that comes after the join ack opens them then', () => {
    const { connection, model, events } = setup();
    join(connection, { role: 'interviewer' });
    assert.equal(model.notes, null);
    connection.fire('interview_state', state('waiting'));
    assert.equal(connection.notesCalls.length, 1);
    assert.equal(events.of('notes-open').length, 1);
    assert.equal(model.notesPermissions.view, true);
    connection.fire('interview_state', state('live'));
    assert.equal(connection.notesCalls.length, 1, 'once');
  });

  test('notes refused to this connection (forbidden): closed, and the page has none any more', () => {
    const { connection, model, events } = setup();
    join(connection, { role: 'interviewer', interview_state: state('live') });
    connection.fire('notes-closed', { code: 'forbidden', message: 'interviewers only' });
    assert.deepEqual(connection.notesCalls.map(([c]) => c), ['open', 'close']);
    assert.equal(model.notes, null);
    assert.deepEqual(model.notesPermissions, NO_NOTES);
    assert.deepEqual(events.of('notes-close'), [{ code: 'forbidden', message: 'interviewers only' }]);
  });
});

/**
 * A socket.io-client Socket as DuetConnection uses it: `on`/`off`, `emit` and `timeout(ms).emit` with
 * an ack callback (recorded in `sent`, answered by the test), `connect`/`disconnect`, `io.on`.
 */
class FakeSocket {
  constructor() {
    this.handlers = new Map();
    this.sent = [];
    this.connected = false;
    this.io = { on() {} };
  }

  on(event, fn) {
    if (!this.handlers.has(event)) this.handlers.set(event, new Set());
    this.handlers.get(event).add(fn);
    return this;
  }

  off(event, fn) {
    this.handlers.get(event)?.delete(fn);
    return this;
  }

  listens(event) {
    return (this.handlers.get(event)?.size ?? 0) > 0;
  }

  fire(event, ...args) {
    for (const fn of [...(this.handlers.get(event) ?? [])]) fn(...args);
  }

  emit(event, payload, ack) {
    this.sent.push({ event, payload, ack });
    return this;
  }

  timeout() {
    return { emit: (event, payload, ack) => this.emit(event, payload, ack) };
  }

  connect() {
    this.connected = true;
    this.fire('connect');
  }

  disconnect() {
    this.connected = false;
    this.fire('disconnect', 'transport close');
  }

  /** Takes what was sent on `event` so far, each with its y-protocols kind. */
  take(event) {
    const out = [];
    this.sent = this.sent.filter((m) => {
      if (m.event !== event) return true;
      out.push({ ...m, kind: kindOf(m.payload) });
      return false;
    });
    return out;
  }
}

/** 'step1' | 'step2' | 'update' | 'awareness' for a y-protocols message; the event's payload else. */
function kindOf(payload) {
  if (!(payload instanceof Uint8Array)) return 'json';
  if (payload[0] === 1) return 'awareness';
  return ['step1', 'step2', 'update'][payload[1]];
}

function syncMessage(write) {
  const e = encoding.createEncoder();
  encoding.writeVarUint(e, 0);
  write(e);
  return encoding.toUint8Array(e);
}

/** A connection over a fake socket, joined (the join ack answered with `ack`). */
function connected(ack = { ok: true, user_id: ME, role: 'interviewer' }) {
  const socket = new FakeSocket();
  const doc = new Y.Doc();
  const awareness = new Awareness(doc);
  const conn = new DuetConnection({ sessionCode: 'ABCDEFGH', name: 'Me', userId: ME, doc, awareness, socket });
  const events = [];
  for (const t of ['status', 'notes-status', 'notes-synced', 'notes-edit-refused', 'notes-resynced', 'notes-closed', 'edit-refused', 'server-error']) {
    conn.on(t, (p) => events.push([t, p]));
  }
  events.of = (t) => events.filter(([x]) => x === t).map(([, p]) => p);
  conn.connect();
  const join = socket.take('join_session');
  assert.equal(join.length, 1);
  join[0].ack(null, ack);
  return { socket, conn, doc, awareness, events };
}

function openNotes(conn) {
  const doc = new Y.Doc();
  const awareness = new Awareness(doc);
  conn.openNotes(doc, awareness);
  return { doc, awareness, text: doc.getText('notes') };
}

/** The server's answer to a client's step 1: step 2 (here: `serverDoc`'s content) and its own step 1. */
function serverAnswers(socket, event, serverDoc) {
  socket.fire(event, syncMessage((e) => syncProtocol.writeSyncStep2(e, serverDoc)));
  socket.fire(event, syncMessage((e) => syncProtocol.writeSyncStep1(e, serverDoc)));
}

describe('connection: the code and the notes documents (fake socket)', () => {
  test('the notes are not listened to until opened; then their handshake runs on `notes`, the code\'s stays on `yjs`', () => {
    const { socket, conn } = connected({ ok: true, user_id: ME, role: 'candidate' });
    assert.deepEqual(socket.take('yjs').map((m) => m.kind), ['step1', 'awareness']);
    assert.equal(socket.listens('notes'), false, 'no notes listener before openNotes');
    assert.equal(socket.take('notes').length, 0);
    assert.equal(conn.notesStatus, null);
    // (The model opens them for an interviewer only.)
    openNotes(conn);
    assert.equal(socket.listens('notes'), true);
    assert.deepEqual(socket.take('notes').map((m) => m.kind), ['step1', 'awareness']);
    assert.equal(socket.take('yjs').length, 0, 'nothing of the code document again');
    assert.equal(conn.notesStatus.state, 'syncing');
    conn.closeNotes();
    assert.equal(socket.listens('notes'), false);
  });

  test('notes edits: on `notes` only, unsaved until acked, with their own status; a reconnect re-sends them in step 2', () => {
    const { socket, conn, events } = connected();
    const notes = openNotes(conn);
    for (const m of socket.take('notes')) m.ack?.(null, { ok: true });
    socket.take('yjs');
    const server = new Y.Doc();
    server.getText('notes').insert(0, 'from the server\n');
    serverAnswers(socket, 'notes', server);
    assert.equal(notes.text.toString(), 'from the server\n');
    assert.equal(events.of('notes-synced').length, 1);
    const reply = socket.take('notes');
    assert.deepEqual(reply.map((m) => m.kind), ['step2'], 'our step 2 answers the server\'s step 1');
    reply[0].ack(null, { ok: true });
    assert.equal(conn.notesStatus.state, 'saved');
    assert.equal(conn.status.state, 'syncing', 'the code document has its own state (not loaded yet)');

    notes.text.insert(notes.text.length, 'asked about recursion');
    const sent = socket.take('notes');
    assert.deepEqual(sent.map((m) => m.kind), ['update']);
    assert.equal(socket.take('yjs').length, 0, 'never on the code event');
    assert.deepEqual([conn.notesStatus.state, conn.notesStatus.unsaved], ['saving', 1]);
    assert.equal(conn.pending.size, 0, 'the code has nothing unsaved');
    assert.deepEqual(events.of('notes-status').at(-1), conn.notesStatus);

    // The connection drops before the ack: offline with one unsaved edit, another typed offline.
    socket.disconnect();
    notes.text.insert(0, '# ');
    assert.equal(socket.take('notes').length, 0, 'nothing sent while disconnected');
    assert.deepEqual([conn.notesStatus.state, conn.notesStatus.unsaved], ['offline', 2]);
    socket.connect();
    socket.take('join_session')[0].ack(null, { ok: true, user_id: ME, role: 'interviewer' });
    assert.deepEqual(socket.take('notes').map((m) => m.kind), ['step1', 'awareness'], 'the notes\' handshake again');
    assert.deepEqual(socket.take('yjs').map((m) => m.kind), ['step1', 'awareness'], 'and the code\'s');
    serverAnswers(socket, 'notes', server);
    const step2 = socket.take('notes');
    assert.deepEqual(step2.map((m) => m.kind), ['step2']);
    // The step 2 carries both unsaved edits: applied to the server's document, it has them.
    const dec = (bytes) => {
      const d = new Y.Doc();
      Y.applyUpdate(d, Y.encodeStateAsUpdate(server));
      const encoder = encoding.createEncoder();
      syncProtocol.readSyncMessage(decodingOf(bytes.subarray(1)), encoder, d, null);
      return d.getText('notes').toString();
    };
    assert.equal(dec(step2[0].payload), '# from the server\nasked about recursion');
    step2[0].ack(null, { ok: true });
    assert.deepEqual([conn.notesStatus.state, conn.notesStatus.unsaved], ['saved', 0]);
  });

  test('a notes edit refused (interview_ended): dropped, the document given up until replaceNotesDoc, which resyncs', () => {
    const { socket, conn, events } = connected();
    const notes = openNotes(conn);
    socket.take('notes');
    serverAnswers(socket, 'notes', new Y.Doc());
    socket.take('notes');
    notes.text.insert(0, 'too late');
    const [update] = socket.take('notes');
    update.ack(null, { ok: false, error: { code: 'interview_ended', message: 'the interview has ended' } });
    assert.deepEqual(events.of('notes-edit-refused'), [{ code: 'interview_ended', message: 'the interview has ended', dropped: 1 }]);
    assert.equal(conn.notesStatus.unsaved, 0);
    assert.equal(events.of('edit-refused').length, 0, 'the code document is not affected');
    notes.text.insert(0, 'more ');
    assert.equal(socket.take('notes').length, 0, 'the given-up document sends nothing');
    const fresh = openNotesDoc();
    conn.replaceNotesDoc(fresh.doc, fresh.awareness);
    assert.deepEqual(socket.take('notes').map((m) => m.kind), ['awareness', 'step1', 'awareness'], 'old cursor withdrawn, then the new handshake');
    assert.equal(conn.notesStatus.state, 'syncing');
    const server = new Y.Doc();
    server.getText('notes').insert(0, 'kept');
    serverAnswers(socket, 'notes', server);
    assert.equal(events.of('notes-resynced').length, 1);
    assert.equal(fresh.doc.getText('notes').toString(), 'kept');
  });

  test('notes refused as forbidden: closed for good, the `notes` event no longer listened to', () => {
    const { socket, conn, events } = connected();
    openNotes(conn);
    const [step1] = socket.take('notes');
    step1.ack(null, { ok: false, error: { code: 'forbidden', message: 'interviewers only' } });
    assert.deepEqual(events.of('notes-closed'), [{ code: 'forbidden', message: 'interviewers only' }]);
    assert.equal(conn.notes, null);
    assert.equal(socket.listens('notes'), false);
    assert.equal(conn.notesStatus, null);
  });

  test('awareness ids count over both documents: past four, a replaced document joins afresh', () => {
    const { socket, conn } = connected();
    openNotes(conn); // code id + notes id: two
    socket.take('yjs');
    socket.take('notes');
    for (let i = 0; i < 2; i++) {
      const fresh = openNotesDoc();
      conn.replaceDoc(fresh.doc, fresh.awareness); // three, four
      assert.equal(socket.take('join_session').length, 0);
      assert.deepEqual(socket.take('yjs').map((m) => m.kind), ['awareness', 'step1', 'awareness']);
    }
    const fifth = openNotesDoc();
    conn.replaceDoc(fifth.doc, fifth.awareness);
    const join = socket.take('join_session');
    assert.equal(join.length, 1, 'joins afresh instead of a fifth id');
    socket.take('yjs');
    join[0].ack(null, { ok: true, user_id: ME, role: 'interviewer' });
    assert.deepEqual(socket.take('yjs').map((m) => m.kind), ['step1', 'awareness']);
    assert.deepEqual(socket.take('notes').map((m) => m.kind), ['step1', 'awareness'], 'the notes\' handshake runs again too');
  });
});

function openNotesDoc() {
  const doc = new Y.Doc();
  return { doc, awareness: new Awareness(doc) };
}
