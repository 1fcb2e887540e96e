// Editor page (/interview/<CODE>): puts the pieces together. The session model (../session-model.js)
// holds what the page knows about the interview over the connection (../connection.js); each view
// (../views/) renders one part of the page from the model's events and sends the user's intents to it.
// docs/FRONTEND.md describes the model's events and the views.
//
// Before connecting, the page gets a participant token (../credentials.js): an interviewer link's
// token (`#token=…`, taken out of the address bar at once) is exchanged for an interviewer's, a
// candidate gets one for a name (and the password, when the interview has one); kept per interview so
// a reload keeps the identity.
import * as Y from 'yjs';
import { Awareness } from 'y-protocols/awareness';
import { CODE_RE, LANGUAGES, getSession, isMissingEndpoint, joinSession, normalizeCode } from '../api.js';
import { watchPastes, watchPresence } from '../activity-reporter.js';
import { DuetConnection, openSocket } from '../connection.js';
import {
  forgetLinkToken,
  forgetParticipant,
  linkToken,
  storeParticipant,
  storedParticipant,
  takeLinkTokenFromUrl,
} from '../credentials.js';
import { getName, getUserId, setUserId, takeShareDialogRequest } from '../identity.js';
import { HtmlRunner, JsRunner, PythonRunner } from '../runners/index.js';
import { SessionModel } from '../session-model.js';
import { mountControlsPanel } from '../views/controls-panel.js';
import { EditorView } from '../views/editor-view.js';
import { mountInterviewBar, showLobbyTitle } from '../views/interview-bar.js';
import { mountLanguagePicker, showLanguage } from '../views/language-picker.js';
import { askJoin } from '../views/name-dialog.js';
import { mountNotesPanel } from '../views/notes-panel.js';
import { mountNotices, toast } from '../views/notices.js';
import { mountFatal, notFoundMessage, showFatal, showInterview } from '../views/page-chrome.js';
import { mountParticipants } from '../views/participants.js';
import { labelRunShortcut, mountRunToolbar } from '../views/run-toolbar.js';
import { RunsPanel } from '../views/runs-panel.js';
import { mountShareDialog } from '../views/share-dialog.js';
import { mountStatusBar } from '../views/status-bar.js';

function codeFromPath() {
  const m = /^\/interview\/([^/]+)\/?$/.exec(window.location.pathname);
  if (!m) return null;
  let raw;
  try {
    raw = decodeURIComponent(m[1]);
  } catch {
    return null;
  }
  const code = normalizeCode(raw);
  return CODE_RE.test(code) ? code : null;
}

/** The page cannot go on: shown as the full-page message. */
class Stop extends Error {
  constructor(title, message) {
    super(message);
    this.title = title;
  }
}

/** What to tell someone whose join failed, and whether the password field is needed now. */
function joinProblem(err, needPassword) {
  switch (err.code) {
    case 'invalid_password':
      return { error: 'Wrong password. Check it with the interviewer and try again.', needPassword: true };
    case 'password_required':
      return { error: 'This interview needs a password.', needPassword: true };
    case 'rate_limited': {
      const s = err.retryAfter;
      return { error: `Too many attempts. Please wait ${s ? `${s} seconds` : 'a moment'} before trying again.`, needPassword, waitSeconds: s ?? 5 };
    }
    case 'invalid_field':
      return { error: err.message, needPassword };
    default:
      return { error: `Could not join: ${err.message}`, needPassword };
  }
}

/**
 * This browser's participant token for the interview, and the name to join with:
 * `{token, userId, name}` (token null when the server hands out none: joined as before, by user id).
 * A kept token is used again; else `POST /join` exchanges the interviewer link's token (`link`), or
 * a name (and password) for a candidate's, asking in the dialog as often as needed.
 */
async function obtainCredentials(code, info, link) {
  const kept = storedParticipant(code, link);
  let name = getName();
  if (kept) return { token: kept.token, userId: kept.user_id, name: name || (await askJoin()).name };
  let needPassword = !link && info?.has_password === true;
  let ask = !name || needPassword;
  let problem = {};
  let password = '';
  for (;;) {
    if (ask) ({ name, password } = await askJoin({ name, needPassword, ...problem }));
    try {
      const p = await joinSession(code, { name, password, linkToken: link });
      storeParticipant(code, p, link);
      return { token: p.token, userId: p.user_id, name };
    } catch (err) {
      if (isMissingEndpoint(err)) return { token: null, userId: getUserId(), name };
      if (err.status === 404) throw new Stop('Interview not found', notFoundMessage(code));
      if (link && err.status === 401) {
        forgetLinkToken(code);
        throw new Stop('This interviewer link does not work', `${err.message || 'The link is not valid'}. Ask whoever created the interview for a new interviewer link, or open the candidate link instead.`);
      }
      problem = joinProblem(err, needPassword);
      needPassword = problem.needPassword;
      ask = true;
    }
  }
}

async function main() {
  const code = codeFromPath();
  // First of all: the interviewer link's token leaves the address bar (and so the history, bookmarks
  // and anything that reads the URL) before anything else happens.
  const fragmentToken = takeLinkTokenFromUrl(code);
  labelRunShortcut();
  if (!code) {
    showFatal('Interview not found', 'This link does not contain a valid interview code. Check the link or ask for a new one.');
    return;
  }
  showInterview({ code });
  const share = mountShareDialog(code);

  // The socket's handshake (several round trips) and the API calls below go out together, not one
  // after the other: on a slow link each round trip is what the candidate waits for. It joins once
  // the credentials are known.
  const socket = openSocket(code);
  socket.connect();
  const link = fragmentToken ?? linkToken(code);
  // With the name known no dialog comes first, so the join request goes out beside the session's;
  // without it the dialog waits for the session (it asks for the password too when there is one).
  const early = getName() ? obtainCredentials(code, null, link) : null;
  early?.catch(() => {}); // read below, unless the session turns out not to exist

  // What the session API knows (title, language); the socket would tell us too, but this lets an
  // unknown code fail fast and clearly.
  let info = null;
  try {
    info = await getSession(code);
  } catch (err) {
    if (err.status === 404) {
      socket.disconnect();
      showFatal('Interview not found', notFoundMessage(code));
      return;
    }
    toast(`Could not load the interview details: ${err.message}`, 'warn');
  }
  const title = (info && typeof info.title === 'string' && info.title.trim()) || 'Untitled interview';
  showInterview({ code, title });
  showLobbyTitle(title);
  const language = LANGUAGES.some((l) => l.id === info?.language) ? info.language : 'javascript';
  showLanguage(language);

  const wantShare = takeShareDialogRequest(code);
  if (link) share.showInterviewerLink(link);
  let creds;
  try {
    creds = await (early ?? obtainCredentials(code, info, link));
  } catch (err) {
    socket.disconnect();
    if (err instanceof Stop) {
      showFatal(err.title, err.message);
      return;
    }
    throw err;
  }
  const { token, name } = creds;
  const userId = creds.userId;

  // The shared document and the connection that keeps it in sync.
  let doc = new Y.Doc();
  let ytext = doc.getText('code');
  let awareness = new Awareness(doc);
  const connection = new DuetConnection({ sessionCode: code, name, userId, doc, awareness, token: token ?? undefined, socket });

  // The model over it, and the code runners it drives (looked up by language at each run).
  const runners = {};
  // The interviewers' private notes: a document of their own, opened by the model only once the server
  // says this user is an interviewer (a candidate's page never listens for them).
  const createNotes = () => {
    const notesDoc = new Y.Doc();
    return { doc: notesDoc, awareness: new Awareness(notesDoc) };
  };
  const model = new SessionModel({ connection, userId, name, language, runners, source: () => ytext.toString(), createNotes });
  runners.javascript = new JsRunner();
  runners.python = new PythonRunner({ onLoadProgress: (p) => model.reportLoadProgress('python', p) });
  // Without a token the server may assign another id: keep it (a token's id is the token's).
  if (!token) model.on('self', (self) => setUserId(self.user_id));

  // The views.
  const editorView = new EditorView(model, { ytext, awareness, focusOnSync: !wantShare });
  mountInterviewBar(model);
  mountControlsPanel(model);
  const notesView = mountNotesPanel(model);
  mountStatusBar(model);
  mountParticipants(model);
  mountLanguagePicker(model);
  mountNotices(model);
  mountFatal(model, code);
  const runsPanel = new RunsPanel(model);
  runners.html = new HtmlRunner({ container: runsPanel.previewContainer }); // renders in the Preview tab
  mountRunToolbar(model);

  // The interview record: this user's pastes (size only) and leaving the page / coming back, reported
  // to the server (interviewers see them live; activity-reporter.js).
  const report = (kind, fields) => model.reportActivity(kind, fields);
  watchPastes(editorView.editor, 'code', report);
  let stopNotesPastes = null;
  const watchNotes = () => {
    stopNotesPastes?.();
    stopNotesPastes = notesView.panel ? watchPastes(notesView.panel.editor, 'notes', report) : null;
  };
  model.on('notes-open', () => queueMicrotask(watchNotes));
  model.on('notes-close', () => queueMicrotask(watchNotes));
  watchPresence({ report });

  // A Python interview will run Python: fetch and start the runtime in its worker as soon as the
  // editor is synced (not before: the editor comes first on a slow link), while the candidate reads
  // the task, instead of on the first Run; and again whenever someone switches to Python.
  const preloadRuntime = (lang) => {
    if (lang === 'python' && model.synced) runners.python.preload();
  };
  model.on('synced', () => preloadRuntime(model.language));
  model.on('language', ({ language: lang }) => preloadRuntime(lang));

  // For debugging and the end-to-end tests.
  window.duet = { doc, ytext, awareness, editor: editorView.editor, binding: editorView.binding, connection, model };
  // The notes panel (null unless this page has the private notes): {doc, ytext, awareness, editor, binding}.
  Object.defineProperty(window.duet, 'notes', { get: () => notesView.panel, enumerable: true });

  // A refused edit (ended, locked, not started): the connection dropped the unsaved local edits; the
  // page continues with a fresh document that the server fills again, so nothing diverges.
  model.on('edit-refused', () => {
    const oldDoc = doc;
    const oldAwareness = awareness;
    doc = new Y.Doc();
    ytext = doc.getText('code');
    awareness = new Awareness(doc);
    editorView.replaceDoc(ytext, awareness);
    connection.replaceDoc(doc, awareness);
    oldAwareness.destroy();
    oldDoc.destroy();
    Object.assign(window.duet, { doc, ytext, awareness });
  });
  model.on('resynced', () => {
    window.duet.binding = editorView.binding;
  });

  // A kept participant token the server no longer takes (expired, or the server's key changed): it is
  // forgotten and the page starts again once, to get a fresh one.
  model.on('fatal', (e) => {
    if (!token || e.code !== 'unauthorized') return;
    forgetParticipant(code);
    const key = `duet.retried.${code}`;
    try {
      if (sessionStorage.getItem(key)) return;
      sessionStorage.setItem(key, '1');
    } catch {
      return;
    }
    window.location.reload();
  });
  model.on('joined', () => {
    try {
      sessionStorage.removeItem(`duet.retried.${code}`);
    } catch {
      /* ignore */
    }
  });

  window.addEventListener('beforeunload', (e) => {
    if (model.status.unsaved > 0 || (model.notesStatus?.unsaved ?? 0) > 0) {
      e.preventDefault();
      e.returnValue = '';
    }
  });

  connection.connect();
  if (wantShare) share.open();
}

main().catch((err) => {
  showFatal('Something went wrong', `The editor could not start: ${err?.message ?? err}`);
});
