// The editor page's session model: what this page knows about the interview, kept in one place over the
// realtime connection (connection.js), and told to the views as typed events (docs/FRONTEND.md lists
// them). Views render from the model and send the user's intents to it (`changeLanguage`, `run`, `stop`,
// and the interviewer's `startInterview`, `endInterview`, `setControls`, `removeParticipant`); they never
// talk to the connection or to each other.
//
// Activity (docs/PROTOCOL.md, `activity`): the page reports this user's pastes and leaving / coming
// back to the page (`reportActivity`, best effort: never an error the user sees); an interviewer's
// model hears everyone else's as 'activity' events and marks who is away (`participants[].away`).
//
// It holds: the user's own identity, the participants, the language, the runs (this page's own and the
// ones everyone shares), the connection/save state ("saved", "saving", "offline — N unsaved edits"),
// the user's role and the interview's lifecycle and controls, and from those what this user may do now
// (`permissions`); and, for an interviewer, the private notes document (`notes`: opened on the
// connection once the server says this user is an interviewer, never for anyone else) with its own save
// state and `notesPermissions`.
//
// No DOM, no socket: the connection and the code runners are passed in, so the model runs under plain
// Node with a fake connection (tests/js/session-model.test.js).
//
// The connection it needs: `on(event, fn)` with lib0 Observable semantics (the connection emits
// `status`, `joined`, `synced`, `fatal`, `server-error` and forwards the server's `sync_code`,
// `user_joined`, `user_left`, `language_updated`, `execution_result`, `interview_state`, `activity`, and
// `edit-refused` / `resynced` around a refused edit), `request(event, payload) → Promise<ack>`, and the
// properties `status`, `synced`, `fatal`; for the notes, `openNotes(doc, awareness)`,
// `replaceNotesDoc(doc, awareness)`, `closeNotes()`, `notesStatus` and the events `notes-status`,
// `notes-synced`, `notes-edit-refused`, `notes-resynced`, `notes-closed`.
import { Emitter } from './emitter.js';
import { LANGUAGES } from './api.js';

export const ROLES = ['interviewer', 'candidate'];
export const LIFECYCLE_STATES = ['waiting', 'live', 'ended'];
/** The interviewer's events (docs/PROTOCOL.md), by the model's intent. */
const CONTROL_EVENTS = { start: 'start_interview', end: 'end_interview', controls: 'set_controls', remove: 'remove_participant' };
const RUN_STATUSES = ['ok', 'error', 'timeout'];
/** What `reportActivity` may report, and what the server relays. */
export const ACTIVITY_KINDS = ['paste', 'blur', 'focus'];
/**
 * Reports sent at most (per second, and in a burst): under the server's limit (5/s, burst 30), so a
 * held-down Ctrl+V never earns this user a "slow down" from the server; the excess is not reported.
 */
export const ACTIVITY_RATE = { perSecond: 4, burst: 25 };

/**
 * Runs the model keeps (the newest): the output panel shows no more either, and a long interview
 * must not grow the page's memory without end.
 */
export const MAX_RUNS = 60;
/**
 * Ids the server acknowledged for this page's runs whose `execution_result` echo has not arrived yet.
 * The echo normally follows within milliseconds; one lost to a disconnect would stay for ever, so only
 * the newest are remembered.
 */
export const MAX_AWAITED_ECHOES = 64;

const isLanguage = (id) => LANGUAGES.some((l) => l.id === id);
const str = (v) => (v === null || v === undefined ? null : String(v));

export class SessionModel extends Emitter {
  /**
   * @param {object} opts
   * @param {object} opts.connection a DuetConnection (or anything with its interface, see above)
   * @param {string} opts.userId this browser's user id, until the server says otherwise
   * @param {string} opts.name this user's display name
   * @param {string} [opts.language] the interview's language as the session API reported it
   * @param {Record<string, {run(source: string, opts: {onOutput?: Function}): Promise<object>, stop(): void, ready?: boolean}>} [opts.runners]
   *   one code runner per language (runners/index.js), looked up when a run starts
   * @param {() => string} [opts.source] the code to run (the shared text)
   * @param {() => {doc: import('yjs').Doc, awareness: import('y-protocols/awareness').Awareness}} [opts.createNotes]
   *   makes an empty notes document and its awareness (the page's); without it no notes are opened
   */
  constructor({ connection, userId, name, language = 'javascript', runners = {}, source = () => '', createNotes = null }) {
    super();
    this.connection = connection;
    this._createNotes = createNotes;
    /**
     * The interviewers' private notes, open on the connection: only while this user is an interviewer.
     * @type {{doc: import('yjs').Doc, awareness: import('y-protocols/awareness').Awareness, synced: boolean, resyncing: boolean}|null}
     */
    this.notes = null;
    this.runners = runners;
    this.source = source;
    /** @type {{user_id: string, name: string, color: string|null}} */
    this.self = { user_id: userId, name, color: null };
    /** @type {Map<string, {user_id: string, name: string, color: string|null}>} in the server's order */
    this._participants = new Map([[userId, { user_id: userId, name, color: null }]]);
    this.language = isLanguage(language) ? language : 'javascript';
    /** @type {'interviewer'|'candidate'|null} null until the server says */
    this.role = null;
    /**
     * The interview's lifecycle and controls, null until the server says (a server without lifecycles
     * never does: then everything is allowed, as before).
     * @type {{state: 'waiting'|'live'|'ended', started_at: string|null, ended_at: string|null, editing_locked: boolean, runs_enabled: boolean}|null}
     */
    this.lifecycle = null;
    this.synced = !!connection.synced;
    /** A refused edit was dropped and the document is being loaded again from the server. */
    this.resyncing = false;
    this._permissionsKey = JSON.stringify(this.permissions);
    this._notesPermissionsKey = JSON.stringify(this.notesPermissions);
    this.fatal = connection.fatal ?? null;
    this.everJoined = false;
    /** @type {object[]} oldest first, at most MAX_RUNS */
    this.runs = [];
    this._running = null; // {run, runner} while this page runs code
    this._runSeq = 0;
    // Matching this page's runs with their `execution_result` echo — by id, never by order: another
    // tab of the same user shares runs under the same user id.
    this._sharesInFlight = 0; // execute_code requests without an answer yet
    this._held = []; // own-user results that arrived while a request was in flight: ours or another tab's
    this._awaitedEchoes = new Set(); // acknowledged ids whose echo is still to come
    /** Users who left the page (their last activity was `blur`), for an interviewer's markers. */
    this._away = new Set();
    this._activityTokens = { tokens: ACTIVITY_RATE.burst, at: Date.now() };

    const on = (event, fn) => connection.on(event, fn.bind(this));
    on('status', this._onStatus);
    on('joined', this._onJoined);
    on('synced', this._onSynced);
    on('fatal', this._onFatal);
    on('server-error', this._onServerError);
    on('sync_code', this._onSyncCode);
    on('user_joined', this._onUserJoined);
    on('user_left', this._onUserLeft);
    on('language_updated', this._onLanguageUpdated);
    on('execution_result', this._onExecutionResult);
    on('interview_state', this._onInterviewState);
    on('activity', this._onActivity);
    on('edit-refused', this._onEditRefused);
    on('resynced', this._onResynced);
    on('notes-status', this._onNotesStatus);
    on('notes-synced', this._onNotesSynced);
    on('notes-edit-refused', this._onNotesEditRefused);
    on('notes-resynced', this._onNotesResynced);
    on('notes-closed', this._onNotesClosed);
  }

  // ---- state --------------------------------------------------------------------------------------

  /** The connection and save state: `{state, unsaved, connected, online}` (see connection.js). */
  get status() {
    return this.connection.status;
  }

  /** Participants, this user first, each `{user_id, name, color, self}`. */
  get participants() {
    const list = [...this._participants.values()].map((p) => ({ ...p, self: p.user_id === this.self.user_id, away: this._away.has(p.user_id) }));
    return list.sort((a, b) => (a.self ? -1 : b.self ? 1 : 0));
  }

  participant(userId) {
    return this._participants.get(userId) ?? null;
  }

  /** Whether this page is running code right now. */
  get running() {
    return this._running !== null;
  }

  get isInterviewer() {
    return this.role === 'interviewer';
  }

  /**
   * What this user may do now, from the role and the lifecycle (the server enforces the same; this is
   * what the page shows):
   * `{edit, editable, run, language, control, lobby, editReason, runReason}` — `editable`: `edit` and
   * the document is loaded (synced, not resyncing); `control`: the interviewer's actions; `lobby`: a
   * candidate waiting for the start (no editor). Reasons: `ended` | `waiting` | `locked` | `runs_off`
   * | null.
   */
  get permissions() {
    const lc = this.lifecycle;
    const interviewer = this.isInterviewer;
    const state = lc?.state ?? null;
    let editReason = null;
    if (state === 'ended') editReason = 'ended';
    else if (!interviewer && state === 'waiting') editReason = 'waiting';
    else if (!interviewer && lc?.editing_locked) editReason = 'locked';
    let runReason = null;
    if (!interviewer && state === 'ended') runReason = 'ended';
    else if (!interviewer && state === 'waiting') runReason = 'waiting';
    else if (!interviewer && lc && !lc.runs_enabled) runReason = 'runs_off';
    const edit = editReason === null;
    return {
      edit,
      editable: edit && this.synced && !this.resyncing,
      run: runReason === null,
      language: edit,
      control: interviewer && lc !== null,
      lobby: !interviewer && state === 'waiting',
      editReason,
      runReason,
    };
  }

  /**
   * What this user may do with the private notes now: `{view, edit, editable, editReason}` — `view`:
   * the notes are open (an interviewer's page); `edit`: and the interview has not ended (editReason
   * `ended`); `editable`: and the notes document is loaded (synced, not resyncing).
   */
  get notesPermissions() {
    const n = this.notes;
    const ended = this.lifecycle?.state === 'ended';
    const view = n !== null;
    const edit = view && !ended;
    return { view, edit, editable: edit && n.synced && !n.resyncing, editReason: view && ended ? 'ended' : null };
  }

  /** The notes' save state (`{state, unsaved, connected, online}`, as `status`), or null without notes. */
  get notesStatus() {
    return this.notes ? this.connection.notesStatus ?? null : null;
  }

  // ---- intents (from the views) -------------------------------------------------------------------

  /**
   * Reports this user's activity to the interview record: `paste` (`{size, doc}`: UTF-16 units pasted
   * into 'code' or 'notes'), `blur` (the page was left) or `focus` (back). Best effort: not sent
   * before joining, once the interview has ended or beyond ACTIVITY_RATE, and a refusal is only
   * returned, never shown.
   * @returns {Promise<boolean>} whether the server took it
   */
  async reportActivity(kind, { size, doc } = {}) {
    if (!ACTIVITY_KINDS.includes(kind) || this.lifecycle?.state === 'ended') return false;
    const bucket = this._activityTokens;
    const now = Date.now();
    bucket.tokens = Math.min(ACTIVITY_RATE.burst, bucket.tokens + ((now - bucket.at) / 1000) * ACTIVITY_RATE.perSecond);
    bucket.at = now;
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    const payload = { kind };
    if (kind === 'paste') Object.assign(payload, { size: Math.max(0, Math.floor(size) || 0), doc: doc === 'notes' ? 'notes' : 'code' });
    try {
      await this.connection.request('activity', payload);
      return true;
    } catch {
      return false;
    }
  }

  /** Switches the interview's language; reverted (with `language-refused`) if the server refuses. */
  changeLanguage(language) {
    const previous = this.language;
    if (!this._setLanguage(language, 'local', { user_id: this.self.user_id, name: this.self.name, self: true })) return;
    this.connection.request('language_change', { language }).catch((err) => {
      this.emit('language-refused', { language, previous, error: errorOf(err) });
      this._setLanguage(previous, 'reverted');
    });
  }

  /**
   * Runs the shared code in this browser with the runner of the current language, then shares the
   * result with everyone. Resolves with the run (null if a run is already going).
   */
  async run() {
    if (this._running || !this.permissions.run) return null;
    const language = this.language;
    const runner = this.runners[language];
    if (!runner) return null;
    const source = this.source();
    const run = this._newRun({
      local: true,
      mine: true,
      user_id: this.self.user_id,
      user_name: this.self.name,
      color: this.participant(this.self.user_id)?.color ?? null,
      language,
      status: 'running',
      output: '',
      duration_ms: null,
      created_at: new Date(),
      notes: language === 'python' && !runner.ready ? ['loading Python (first run only)'] : [],
    });
    this._running = { run, runner };
    this.emit('running', { running: true, run });
    this.emit('run-added', { run });
    const output = (stream, text) => {
      run.output += text;
      this.emit('run-output', { run, stream, text });
    };
    let result;
    try {
      result = await runner.run(source, { onOutput: ({ stream, text }) => output(stream, text) });
    } catch (err) {
      result = { status: 'error', output: String(err?.message ?? err), duration_ms: 0 };
      output('stderr', `${result.output}\n`);
    }
    run.status = RUN_STATUSES.includes(result.status) ? result.status : 'error';
    run.output = String(result.output ?? '');
    run.duration_ms = typeof result.duration_ms === 'number' ? result.duration_ms : null;
    this._running = null;
    this.emit('run-finished', { run });
    this.emit('running', { running: false, run });
    await this._share(run, { language, output: run.output, status: run.status, duration_ms: result.duration_ms });
    return run;
  }

  /** Stops this page's run (the runner ends it with status `error`, or `timeout` on its own). */
  stop() {
    this._running?.runner.stop();
  }

  // ---- the interviewer's intents --------------------------------------------------------------------
  // Each resolves with `{ok: true}` or `{ok: false, error}` (never rejects); a refusal is also told as
  // `control-refused {action, error}`. The new state arrives as `interview_state` (everyone hears it);
  // a lifecycle step in the ack is applied at once.

  /** waiting → live. */
  startInterview() {
    return this._control('start', {});
  }

  /** → ended, for good: the documents become read-only for everyone. */
  endInterview() {
    return this._control('end', {});
  }

  /** `{editing_locked?, runs_enabled?}`: lock the candidate's editing, turn code running off or on. */
  setControls(controls) {
    const payload = {};
    if (typeof controls?.editing_locked === 'boolean') payload.editing_locked = controls.editing_locked;
    if (typeof controls?.runs_enabled === 'boolean') payload.runs_enabled = controls.runs_enabled;
    return this._control('controls', payload);
  }

  /** Removes a participant: their connections are closed and their token refused from then on. */
  removeParticipant(userId) {
    return this._control('remove', { user_id: userId });
  }

  async _control(action, payload) {
    try {
      const ack = await this.connection.request(CONTROL_EVENTS[action], payload);
      const next = ack?.interview_state;
      // The lifecycle only moves forward; the controls come with the broadcast, which is never older.
      if (next && this.lifecycle && LIFECYCLE_STATES.indexOf(next.state) > LIFECYCLE_STATES.indexOf(this.lifecycle.state)) {
        this._onInterviewState({ ...this.lifecycle, state: next.state, started_at: next.started_at ?? this.lifecycle.started_at, ended_at: next.ended_at ?? this.lifecycle.ended_at });
      }
      return { ok: true };
    } catch (err) {
      const error = errorOf(err);
      this.emit('control-refused', { action, error });
      return { ok: false, error };
    }
  }

  /** A runtime's download progress (Python): forwarded as `runtime-progress` for the toolbar. */
  reportLoadProgress(language, progress) {
    this.emit('runtime-progress', { language, ...progress });
  }

  // ---- sharing runs -------------------------------------------------------------------------------

  async _share(run, payload) {
    if (this.lifecycle?.state === 'ended') {
      // The server shares no runs once the interview has ended (an interviewer may still run the code).
      run.share = 'failed';
      this.emit('run-not-shared', { run, error: { code: 'interview_ended', message: 'the interview has ended' } });
      return;
    }
    run.share = 'pending';
    this._sharesInFlight++;
    let ack;
    try {
      ack = await this.connection.request('execute_code', payload);
    } catch (err) {
      this._sharesInFlight--;
      run.share = 'failed';
      this.emit('run-not-shared', { run, error: errorOf(err) });
      this._releaseHeld();
      return;
    }
    this._sharesInFlight--;
    const id = typeof ack?.id === 'string' || typeof ack?.id === 'number' ? String(ack.id) : null;
    run.id = id;
    run.share = 'shared';
    if (id !== null) {
      const i = this._held.findIndex((r) => str(r.id) === id);
      if (i >= 0) {
        this._held.splice(i, 1); // its echo came first (the server broadcasts before it acks)
      } else {
        this._awaitedEchoes.add(id);
        while (this._awaitedEchoes.size > MAX_AWAITED_ECHOES) this._awaitedEchoes.delete(this._awaitedEchoes.values().next().value);
      }
    }
    this.emit('run-shared', { run });
    this._releaseHeld();
  }

  /** Once no request of ours is waiting for its id, every held result is another tab's run. */
  _releaseHeld() {
    if (this._sharesInFlight > 0) return;
    const held = this._held;
    this._held = [];
    for (const r of held) this._addSharedRun(r);
  }

  _onExecutionResult(r) {
    if (!r || typeof r !== 'object') return;
    const id = str(r.id);
    if (id !== null && this._awaitedEchoes.delete(id)) return; // the echo of a run of this page
    if (r.user_id === this.self.user_id && this._sharesInFlight > 0) {
      // Ours or another tab's: the id in the ack that is on its way decides.
      this._held.push(r);
      return;
    }
    this._addSharedRun(r);
  }

  _addSharedRun(r) {
    const mine = r.user_id === this.self.user_id;
    const created = r.created_at ? new Date(r.created_at) : new Date();
    const run = this._newRun({
      id: str(r.id),
      local: false,
      mine, // true: this user's run from another tab
      user_id: str(r.user_id),
      // For another tab of this user the label is the user's name as the server recorded it, or "You".
      user_name: str(r.user_name) ?? (mine ? null : this.participant(r.user_id)?.name ?? null),
      color: this.participant(r.user_id)?.color ?? null,
      language: r.language,
      status: RUN_STATUSES.includes(r.status) ? r.status : 'error',
      output: String(r.output ?? ''),
      duration_ms: typeof r.duration_ms === 'number' ? r.duration_ms : null,
      created_at: Number.isNaN(created.getTime()) ? new Date() : created,
      notes: [],
    });
    this.emit('run-added', { run });
  }

  _newRun(fields) {
    const run = { key: `run-${++this._runSeq}`, id: null, share: null, ...fields };
    this.runs.push(run);
    if (this.runs.length > MAX_RUNS) this.runs.splice(0, this.runs.length - MAX_RUNS);
    return run;
  }

  // ---- connection events --------------------------------------------------------------------------

  _onStatus(status) {
    this.emit('status', status);
  }

  /** Emits `permissions` / `notes-permissions` when what this user may do changed. */
  _permissionsChanged() {
    const n = this.notesPermissions;
    const nkey = JSON.stringify(n);
    if (nkey !== this._notesPermissionsKey) {
      this._notesPermissionsKey = nkey;
      this.emit('notes-permissions', n);
    }
    const p = this.permissions;
    const key = JSON.stringify(p);
    if (key === this._permissionsKey) return;
    this._permissionsKey = key;
    this.emit('permissions', p);
  }

  // ---- the private notes --------------------------------------------------------------------------

  /**
   * Notes open for an interviewer (the server's word, from the join ack), closed for anyone else. Only
   * with a server that speaks interviews (it sends the lifecycle): the notes came with it, and an older
   * server would leave them loading for ever.
   */
  _updateNotes() {
    const want = this.role === 'interviewer' && this.lifecycle !== null && typeof this._createNotes === 'function';
    if (want && !this.notes) {
      const { doc, awareness } = this._createNotes();
      this.notes = { doc, awareness, synced: false, resyncing: false };
      // The view first (it puts this user's name into the awareness), then the handshake, which sends it.
      this.emit('notes-open', { doc, awareness });
      this.connection.openNotes(doc, awareness);
    } else if (!want && this.notes) {
      this._dropNotes({ code: 'forbidden', message: 'only interviewers see the notes' });
    }
  }

  _dropNotes(error) {
    const old = this.notes;
    this.notes = null;
    this.connection.closeNotes();
    this.emit('notes-close', error);
    old.awareness.destroy();
    old.doc.destroy();
    this._permissionsChanged();
  }

  _onNotesStatus(status) {
    if (this.notes) this.emit('notes-status', status);
  }

  _onNotesSynced() {
    if (!this.notes) return;
    this.notes.synced = true;
    this.emit('notes-synced', {});
    this._permissionsChanged();
  }

  /**
   * The server refused a notes edit for good (the interview ended): the connection dropped the unsaved
   * notes edits; a fresh document takes the old one's place and is filled from the server again.
   * `notes-edit-refused` carries it (the view lets go of the old one and binds the new one on
   * `notes-resynced`).
   */
  _onNotesEditRefused(e) {
    if (!this.notes) return;
    const old = this.notes;
    const { doc, awareness } = this._createNotes();
    this.notes = { doc, awareness, synced: old.synced, resyncing: true };
    this.emit('notes-edit-refused', { ...errorOf(e), dropped: typeof e?.dropped === 'number' ? e.dropped : 0, doc, awareness });
    this.connection.replaceNotesDoc(doc, awareness);
    old.awareness.destroy();
    old.doc.destroy();
    this._permissionsChanged();
  }

  _onNotesResynced() {
    if (!this.notes?.resyncing) return;
    this.notes.resyncing = false;
    this.emit('notes-resynced', { doc: this.notes.doc, awareness: this.notes.awareness });
    this._permissionsChanged();
  }

  /** The server will not give this connection the notes (`forbidden`): the page has none any more. */
  _onNotesClosed(e) {
    if (this.notes) this._dropNotes(errorOf(e));
  }

  _onEditRefused(e) {
    this.resyncing = true;
    const error = errorOf(e);
    this.emit('edit-refused', { ...error, dropped: typeof e?.dropped === 'number' ? e.dropped : 0 });
    this._permissionsChanged();
  }

  _onResynced() {
    if (!this.resyncing) return;
    this.resyncing = false;
    this.emit('resynced', {});
    this._permissionsChanged();
  }

  _onJoined(ack) {
    const rejoin = this.everJoined;
    this.everJoined = true;
    const before = this.self;
    const userId = typeof ack?.user_id === 'string' ? ack.user_id : before.user_id;
    const color = typeof ack?.color === 'string' ? ack.color : null;
    const selfChanged = userId !== before.user_id || color !== before.color;
    if (selfChanged) {
      this.self = { ...before, user_id: userId, color };
      this.emit('self', { ...this.self });
    }
    if (ROLES.includes(ack?.role) && ack.role !== this.role) {
      this.role = ack.role;
      this.emit('role', { role: this.role });
    }
    if (ack?.interview_state) this._onInterviewState(ack.interview_state);
    this._updateNotes();
    if (Array.isArray(ack?.participants)) this._replaceParticipants(ack.participants);
    else if (selfChanged) this.emit('participants', { participants: this.participants });
    if (typeof ack?.language === 'string') this._setLanguage(ack.language, 'server');
    this.emit('joined', { rejoin });
    this._permissionsChanged();
  }

  _onSynced() {
    this.synced = true;
    this.emit('synced', {});
    this._permissionsChanged();
  }

  _onFatal(error) {
    this.fatal = errorOf(error);
    this.emit('fatal', this.fatal);
  }

  _onServerError(error) {
    this.emit('server-error', errorOf(error));
  }

  _onSyncCode(p) {
    if (p && typeof p.language === 'string') this._setLanguage(p.language, 'server');
    if (p && Array.isArray(p.participants)) this._replaceParticipants(p.participants);
  }

  _onUserJoined(p) {
    this._presence(p, 'participant-joined');
  }

  _onUserLeft(p) {
    if (p && typeof p.user_id === 'string') this._away.delete(p.user_id);
    this._presence(p, 'participant-left');
  }

  /** Someone's activity (an interviewer's page only: the server sends it to no one else). */
  _onActivity(p) {
    if (!p || typeof p !== 'object' || !ACTIVITY_KINDS.includes(p.kind) || typeof p.user_id !== 'string') return;
    const a = {
      kind: p.kind,
      user_id: p.user_id,
      name: str(p.name) ?? this.participant(p.user_id)?.name ?? null,
      at: typeof p.at === 'string' ? p.at : null,
      size: Number.isInteger(p.size) ? p.size : null,
      doc: p.doc === 'notes' ? 'notes' : p.kind === 'paste' ? 'code' : null,
    };
    this.emit('activity', a);
    const away = p.kind === 'blur';
    if (p.kind !== 'paste' && this._away.has(p.user_id) !== away) {
      if (away) this._away.add(p.user_id);
      else this._away.delete(p.user_id);
      this.emit('participants', { participants: this.participants });
    }
  }

  _presence(p, event) {
    if (!p || typeof p !== 'object') return;
    if (Array.isArray(p.participants)) this._replaceParticipants(p.participants);
    if (p.user_id !== this.self.user_id) this.emit(event, { user_id: str(p.user_id), name: str(p.name) });
  }

  _onLanguageUpdated(p) {
    if (!p || typeof p.language !== 'string') return;
    const self = p.user_id === this.self.user_id;
    const name = self ? this.self.name : this.participant(p.user_id)?.name ?? null;
    this._setLanguage(p.language, 'remote', { user_id: str(p.user_id), name, self });
  }

  _onInterviewState(p) {
    if (!p || typeof p !== 'object' || !LIFECYCLE_STATES.includes(p.state)) return;
    const next = {
      state: p.state,
      started_at: typeof p.started_at === 'string' ? p.started_at : null,
      ended_at: typeof p.ended_at === 'string' ? p.ended_at : null,
      // A server that does not send the controls has none: editing open, runs on.
      editing_locked: p.editing_locked === true,
      runs_enabled: p.runs_enabled !== false,
    };
    const now = this.lifecycle;
    if (now && Object.keys(next).every((k) => now[k] === next[k])) return;
    const previous = now ? { ...now } : null;
    this.lifecycle = next;
    this.emit('lifecycle', { ...next, previous });
    if (!previous) this._updateNotes();
    this._permissionsChanged();
  }

  // ---- helpers ------------------------------------------------------------------------------------

  _replaceParticipants(list) {
    this._participants.clear();
    for (const p of list) {
      if (p && typeof p.user_id === 'string') {
        this._participants.set(p.user_id, { user_id: p.user_id, name: String(p.name ?? 'Anonymous'), color: typeof p.color === 'string' ? p.color : null });
      }
    }
    this.emit('participants', { participants: this.participants });
  }

  /**
   * Sets the language and emits `language` if it is a known one and differs from the current one.
   * `source`: local (this user picked it) | remote (someone else) | server (join / sync) | reverted.
   */
  _setLanguage(language, source, by = null) {
    if (!isLanguage(language) || language === this.language) return false;
    const previous = this.language;
    this.language = language;
    this.emit('language', { language, previous, source, by });
    return true;
  }
}

function errorOf(err) {
  if (err && typeof err === 'object') {
    return { code: typeof err.code === 'string' ? err.code : 'error', message: typeof err.message === 'string' ? err.message : '' };
  }
  return { code: 'error', message: String(err ?? '') };
}
