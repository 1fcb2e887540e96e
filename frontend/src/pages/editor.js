// Editor page (/interview/<CODE>): puts the pieces together. The session model (../session-model.js)
// holds what the page knows about the interview over the connection (../connection.js); each view
// (../views/) renders one part of the page from the model's events and sends the user's intents to it.
// docs/FRONTEND.md describes the model's events and the views.
import * as Y from 'yjs';
import { Awareness } from 'y-protocols/awareness';
import { CODE_RE, LANGUAGES, getSession, normalizeCode } from '../api.js';
import { DuetConnection } from '../connection.js';
import { getName, getUserId, setUserId, takeShareDialogRequest } from '../identity.js';
import { HtmlRunner, JsRunner, PythonRunner } from '../runners/index.js';
import { SessionModel } from '../session-model.js';
import { EditorView } from '../views/editor-view.js';
import { mountLanguagePicker, showLanguage } from '../views/language-picker.js';
import { askName } from '../views/name-dialog.js';
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

async function main() {
  const code = codeFromPath();
  labelRunShortcut();
  if (!code) {
    showFatal('Interview not found', 'This link does not contain a valid interview code. Check the link or ask for a new one.');
    return;
  }
  showInterview({ code });
  const share = mountShareDialog(code);

  // What the session API knows (title, language); the socket would tell us too, but this lets an
  // unknown code fail fast and clearly.
  let info = null;
  try {
    info = await getSession(code);
  } catch (err) {
    if (err.status === 404) {
      showFatal('Interview not found', notFoundMessage(code));
      return;
    }
    toast(`Could not load the interview details: ${err.message}`, 'warn');
  }
  const title = (info && typeof info.title === 'string' && info.title.trim()) || 'Untitled interview';
  showInterview({ code, title });
  const language = LANGUAGES.some((l) => l.id === info?.language) ? info.language : 'javascript';
  showLanguage(language);

  const wantShare = takeShareDialogRequest(code);
  const name = getName() || (await askName());
  const userId = getUserId();

  // The shared document and the connection that keeps it in sync.
  const doc = new Y.Doc();
  const ytext = doc.getText('code');
  const awareness = new Awareness(doc);
  const connection = new DuetConnection({ sessionCode: code, name, userId, doc, awareness });

  // The model over it, and the code runners it drives (looked up by language at each run).
  const runners = {};
  const model = new SessionModel({ connection, userId, name, language, runners, source: () => ytext.toString() });
  runners.javascript = new JsRunner();
  runners.python = new PythonRunner({ onLoadProgress: (p) => model.reportLoadProgress('python', p) });
  model.on('self', (self) => setUserId(self.user_id)); // the server may assign another id: keep it

  // The views.
  const editorView = new EditorView(model, { ytext, awareness, focusOnSync: !wantShare });
  mountStatusBar(model);
  mountParticipants(model);
  mountLanguagePicker(model);
  mountNotices(model);
  mountFatal(model, code);
  const runsPanel = new RunsPanel(model);
  runners.html = new HtmlRunner({ container: runsPanel.previewContainer }); // renders in the Preview tab
  mountRunToolbar(model);

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

  window.addEventListener('beforeunload', (e) => {
    if (model.status.unsaved > 0) {
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
