// Editor page (/interview/<CODE>): Ace bound to the shared Y.Text "code", remote cursors, participants,
// shared language, in-browser code execution with shared results, and an honest connection status.
import * as Y from 'yjs';
import { Awareness } from 'y-protocols/awareness';
import { AceBinding, safeColor } from '../ace-yjs.js';
import { createEditor, setEditorLanguage } from '../ace-setup.js';
import { CODE_RE, LANGUAGES, getSession, languageLabel, normalizeCode } from '../api.js';
import { DuetConnection } from '../connection.js';
import { getName, getUserId, normalizeName, setName, setUserId, takeShareDialogRequest } from '../identity.js';
import { HtmlRunner, JsRunner, PythonRunner } from '../runners/index.js';

const $ = (id) => document.getElementById(id);
const isMac = /Mac|iPhone|iPad/.test(navigator.userAgentData?.platform || navigator.platform || '');

// ---- small UI helpers -------------------------------------------------------------------------------

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') node.className = v;
    else if (k === 'style') node.setAttribute('style', v);
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function initials(name) {
  const parts = String(name).trim().split(/\s+/).filter(Boolean);
  const letters = parts.length > 1 ? parts[0][0] + parts[parts.length - 1][0] : (parts[0] || '?').slice(0, 2);
  return [...letters].slice(0, 2).join('').toUpperCase();
}

function timeLabel(date) {
  return date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

function toast(message, kind = 'info') {
  const box = $('toasts');
  const t = el('div', { class: `toast toast-${kind}` }, message);
  box.append(t);
  while (box.childElementCount > 4) box.firstElementChild.remove();
  setTimeout(() => {
    t.classList.add('toast-out');
    setTimeout(() => t.remove(), 300);
  }, 4000);
}

function activity(message) {
  const list = $('activity');
  list.append(el('li', {}, el('time', {}, timeLabel(new Date())), ' ', message));
  while (list.childElementCount > 50) list.firstElementChild.remove();
  list.scrollTop = list.scrollHeight;
}

function showFatal(title, message) {
  $('fatal-title').textContent = title;
  $('fatal-message').textContent = message;
  $('fatal').hidden = false;
  document.body.classList.add('has-fatal');
  document.title = `${title} · Duet`;
}

async function copyText(text) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    /* fall back below */
  }
  const ta = el('textarea', { style: 'position:fixed;opacity:0;top:0;left:0' });
  ta.value = text;
  document.body.append(ta);
  ta.select();
  let ok = false;
  try {
    ok = document.execCommand('copy');
  } catch {
    ok = false;
  }
  ta.remove();
  return ok;
}

// ---- name dialog ------------------------------------------------------------------------------------

function askName() {
  const dialog = $('name-dialog');
  const input = $('name-input');
  const error = $('name-error');
  return new Promise((resolve) => {
    let done = false;
    dialog.addEventListener('cancel', (e) => e.preventDefault()); // a name is needed to join
    // Browsers let a second Escape close a modal dialog anyway: open it again until there is a name.
    dialog.addEventListener('close', () => {
      if (!done) {
        dialog.showModal();
        input.focus();
      }
    });
    $('name-form').addEventListener('submit', (e) => {
      const name = normalizeName(input.value);
      if (!name) {
        e.preventDefault();
        error.textContent = 'Please enter a name (up to 64 characters).';
        error.hidden = false;
        input.focus();
        return;
      }
      done = true;
      resolve(setName(name));
    });
    dialog.showModal();
    input.focus();
  });
}

// ---- share dialog -----------------------------------------------------------------------------------

function setupShareDialog(code) {
  const dialog = $('share-dialog');
  const link = `${window.location.origin}/interview/${encodeURIComponent(code)}`;
  $('share-link').value = link;
  $('share-code').value = code;
  const feedback = $('copy-feedback');
  for (const id of ['copy-link', 'copy-code']) {
    const button = $(id);
    button.addEventListener('click', async () => {
      const input = $(button.dataset.copyTarget);
      const ok = await copyText(input.value);
      if (!ok) input.select();
      feedback.textContent = ok
        ? `${id === 'copy-link' ? 'Link' : 'Code'} copied to the clipboard.`
        : 'Press Ctrl+C (⌘C) to copy the selected text.';
    });
  }
  const open = () => {
    feedback.textContent = '';
    if (!dialog.open) dialog.showModal();
    $('copy-link').focus();
  };
  $('share-btn').addEventListener('click', open);
  $('code-chip').addEventListener('click', open);
  dialog.addEventListener('click', (e) => {
    if (e.target === dialog) dialog.close(); // click on the backdrop
  });
  return { open };
}

// ---- output panel -----------------------------------------------------------------------------------

class OutputPanel {
  constructor() {
    this.log = $('output');
    this.preview = $('preview');
    this.tabs = { console: $('tab-console'), preview: $('tab-preview') };
    for (const [name, tab] of Object.entries(this.tabs)) {
      tab.addEventListener('click', () => this.select(name));
      tab.addEventListener('keydown', (e) => {
        if (e.key === 'ArrowRight' || e.key === 'ArrowLeft') {
          const next = name === 'console' ? 'preview' : 'console';
          this.select(next);
          this.tabs[next].focus();
        }
      });
    }
    $('clear-btn').addEventListener('click', () => {
      this.log.replaceChildren();
    });
  }

  select(name) {
    for (const [n, tab] of Object.entries(this.tabs)) {
      const on = n === name;
      tab.setAttribute('aria-selected', String(on));
      tab.tabIndex = on ? 0 : -1;
    }
    this.log.hidden = name !== 'console';
    this.preview.hidden = name !== 'preview';
  }

  _atBottom() {
    return this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 40;
  }

  /** A run entry; returns helpers to stream output into it and finish it. */
  addRun({ who, color, language, status = 'running', local = false, when = new Date() }) {
    this.log.querySelector('.empty-hint')?.remove();
    const stick = this._atBottom();
    const statusEl = el('span', { class: 'run-status' }, status === 'running' ? 'running…' : status);
    const meta = el('span', { class: 'run-meta' });
    const pre = el('pre', { class: 'run-output' });
    const article = el(
      'article',
      { class: `run run-${status}${local ? ' run-local' : ''}`, dataset: { status } },
      el(
        'header',
        { class: 'run-header' },
        el('span', { class: 'who-dot', style: `--c:${safeColor(color)}` }),
        el('strong', { class: 'run-who' }, who),
        ` ran ${languageLabel(language)} `,
        statusEl,
        meta,
        el('time', { class: 'run-time', datetime: when.toISOString() }, timeLabel(when)),
      ),
      pre,
    );
    this.log.append(article);
    while (this.log.childElementCount > 60) this.log.firstElementChild.remove();
    if (stick) this.log.scrollTop = this.log.scrollHeight;
    const append = (stream, text) => {
      const s = this._atBottom();
      const last = pre.lastChild;
      if (last && last.dataset.stream === stream) last.textContent += text;
      else pre.append(el('span', { class: stream, dataset: { stream } }, text));
      if (s) this.log.scrollTop = this.log.scrollHeight;
    };
    return {
      article,
      append,
      setText: (text) => {
        pre.replaceChildren();
        if (text) append('stdout', text);
      },
      finish: ({ status: st, duration_ms }) => {
        article.className = `run run-${st}${local ? ' run-local' : ''}`;
        article.dataset.status = st;
        statusEl.textContent = st === 'ok' ? 'ok' : st === 'timeout' ? 'timed out' : 'error';
        meta.textContent = typeof duration_ms === 'number' ? ` · ${duration_ms} ms` : '';
        if (!pre.textContent) append('stdout', '(no output)\n');
      },
      note: (text) => meta.append(el('span', { class: 'run-note' }, ` · ${text}`)),
    };
  }
}

// ---- participants -----------------------------------------------------------------------------------

class People {
  constructor(selfId) {
    this.selfId = selfId;
    this.byId = new Map();
  }

  setSelf(id) {
    this.selfId = id;
  }

  replace(list) {
    if (!Array.isArray(list)) return;
    this.byId.clear();
    for (const p of list) {
      if (p && typeof p.user_id === 'string') this.byId.set(p.user_id, { name: String(p.name ?? 'Anonymous'), color: p.color });
    }
    this.render();
  }

  get(id) {
    return this.byId.get(id);
  }

  render() {
    const list = $('participants');
    const avatars = $('avatars');
    const people = [...this.byId.entries()].sort(([a], [b]) => (a === this.selfId ? -1 : b === this.selfId ? 1 : 0));
    list.replaceChildren(
      ...people.map(([id, p]) =>
        el(
          'li',
          { class: 'participant', dataset: { userId: id } },
          el('span', { class: 'avatar', style: `--c:${safeColor(p.color)}`, 'aria-hidden': 'true' }, initials(p.name)),
          el('span', { class: 'participant-name' }, p.name),
          id === this.selfId ? el('span', { class: 'you' }, '(you)') : null,
        ),
      ),
    );
    avatars.replaceChildren(
      ...people.slice(0, 4).map(([id, p]) =>
        el('li', { class: 'avatar', style: `--c:${safeColor(p.color)}`, title: id === this.selfId ? `${p.name} (you)` : p.name }, initials(p.name)),
      ),
      ...(people.length > 4 ? [el('li', { class: 'avatar avatar-more' }, `+${people.length - 4}`)] : []),
    );
    $('people-count').textContent = String(people.length);
  }
}

// ---- connection status ------------------------------------------------------------------------------

function renderStatus(st) {
  const box = $('status');
  const text = box.querySelector('.status-text');
  const edits = (n) => `${n} unsaved edit${n === 1 ? '' : 's'}`;
  let label;
  let detail;
  switch (st.state) {
    case 'connecting':
      label = 'Connecting…';
      detail = 'Connecting to the interview.';
      break;
    case 'syncing':
      label = 'Connected · syncing…';
      detail = 'Connected; loading the latest code.';
      break;
    case 'saving':
      label = 'Connected · saving…';
      detail = `Connected; ${edits(st.unsaved)} waiting for the server to save them.`;
      break;
    case 'saved':
      label = 'Connected · all changes saved';
      detail = 'Connected; every edit is saved.';
      break;
    case 'reconnecting':
      label = 'Reconnecting…';
      detail = 'The connection dropped; reconnecting. Nothing is waiting to be saved.';
      break;
    case 'offline':
      label = st.unsaved > 0 ? `Offline · ${edits(st.unsaved)}` : 'Offline';
      detail =
        st.unsaved > 0
          ? `Not connected. Keep typing: your ${edits(st.unsaved)} will be sent when the connection is back.`
          : 'Not connected; retrying.';
      break;
    default:
      label = 'Disconnected';
      detail = 'This page is no longer connected to the interview.';
  }
  box.dataset.state = st.state;
  box.dataset.unsaved = String(st.unsaved);
  box.title = detail;
  text.textContent = label;
}

// ---- main -------------------------------------------------------------------------------------------

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
  $('run-kbd').textContent = isMac ? '⌘+Enter' : 'Ctrl+Enter';
  if (!code) {
    showFatal('Interview not found', 'This link does not contain a valid interview code. Check the link or ask for a new one.');
    return;
  }
  $('code-chip').textContent = code;
  $('code-chip').setAttribute('aria-label', `Interview code ${code}. Share`);
  const share = setupShareDialog(code);

  // What the session API knows (title, language); the socket would tell us too, but this lets an
  // unknown code fail fast and clearly.
  let info = null;
  try {
    info = await getSession(code);
  } catch (err) {
    if (err.status === 404) {
      showFatal('Interview not found', `No interview has the code ${code}. Check the link or ask for a new one.`);
      return;
    }
    toast(`Could not load the interview details: ${err.message}`, 'warn');
  }
  const title = (info && typeof info.title === 'string' && info.title.trim()) || 'Untitled interview';
  $('session-title').textContent = title;
  document.title = `${title} · Duet`;

  let language = LANGUAGES.some((l) => l.id === info?.language) ? info.language : 'javascript';
  const languageSelect = $('language');
  languageSelect.value = language;

  const wantShare = takeShareDialogRequest(code);
  const name = getName() || (await askName());
  let userId = getUserId();

  // --- shared document, editor, binding
  const doc = new Y.Doc();
  const ytext = doc.getText('code');
  const awareness = new Awareness(doc);
  awareness.setLocalStateField('user', { name, color: safeColor(null, doc.clientID) });

  const editor = createEditor($('editor'), {
    language,
    placeholder: 'Start typing — everyone here sees it live. Ctrl+Enter runs the code.',
  });
  editor.setReadOnly(true);
  const binding = new AceBinding(ytext, editor, awareness);
  window.duet = { doc, ytext, awareness, editor, binding }; // for debugging and the end-to-end tests

  const people = new People(userId);
  people.replace([{ user_id: userId, name, color: null }]);

  const setLanguage = (lang, { announce = null } = {}) => {
    if (!LANGUAGES.some((l) => l.id === lang)) return;
    const changed = lang !== language;
    language = lang;
    languageSelect.value = lang;
    setEditorLanguage(editor, lang);
    if (changed && announce) {
      activity(announce);
      toast(announce);
    }
  };

  // The skip link lands in the editor itself (Ace's text input), not just next to it.
  document.querySelector('.skip-link')?.addEventListener('click', (e) => {
    e.preventDefault();
    editor.focus();
  });

  // --- connection
  const connection = new DuetConnection({ sessionCode: code, name, userId, doc, awareness });
  window.duet.connection = connection;
  connection.on('status', renderStatus);
  renderStatus(connection.status);

  let firstJoin = true;
  connection.on('joined', (ack) => {
    if (typeof ack.user_id === 'string') {
      userId = ack.user_id;
      setUserId(userId);
      people.setSelf(userId);
    }
    awareness.setLocalStateField('user', { name, color: safeColor(ack.color, doc.clientID) });
    if (Array.isArray(ack.participants)) people.replace(ack.participants);
    if (ack.language) setLanguage(ack.language);
    if (firstJoin) activity('You joined the interview.');
    else activity('Reconnected.');
    firstJoin = false;
  });
  connection.on('synced', () => {
    editor.setReadOnly(false);
    $('editor-cover').hidden = true;
    if (!wantShare) editor.focus();
  });
  connection.on('sync_code', (p) => {
    if (p && typeof p.language === 'string') setLanguage(p.language);
    if (p && Array.isArray(p.participants)) people.replace(p.participants);
  });
  connection.on('user_joined', (p) => {
    if (!p) return;
    if (Array.isArray(p.participants)) people.replace(p.participants);
    if (p.user_id !== userId) {
      const msg = `${p.name ?? 'Someone'} joined`;
      activity(msg);
      toast(msg);
    }
  });
  connection.on('user_left', (p) => {
    if (!p) return;
    if (Array.isArray(p.participants)) people.replace(p.participants);
    if (p.user_id !== userId) {
      const msg = `${p.name ?? 'Someone'} left`;
      activity(msg);
      toast(msg);
    }
  });
  connection.on('language_updated', (p) => {
    if (!p || typeof p.language !== 'string') return;
    const who = p.user_id === userId ? 'You' : people.get(p.user_id)?.name ?? 'Someone';
    setLanguage(p.language, { announce: `${who} switched the language to ${languageLabel(p.language)}` });
  });
  connection.on('server-error', (e) => {
    if (e.code === 'join_timeout') return; // the status indicator already says it
    toast(e.message || 'The server reported an error.', 'warn');
  });
  connection.on('fatal', (e) => {
    if (e.code === 'session_not_found') {
      showFatal('Interview not found', `No interview has the code ${code}. Check the link or ask for a new one.`);
    } else {
      showFatal('Cannot join this interview', e.message || 'The server refused to let this page join.');
    }
  });

  languageSelect.addEventListener('change', () => {
    const lang = languageSelect.value;
    const previous = language;
    if (lang === previous) return;
    setLanguage(lang, { announce: `You switched the language to ${languageLabel(lang)}` });
    connection.request('language_change', { language: lang }).catch((err) => {
      toast(`The language change was not shared: ${err.message}`, 'warn');
      setLanguage(previous);
    });
  });

  // --- running code
  const output = new OutputPanel();
  const progress = $('py-progress');
  const progressBar = $('py-progress-bar');
  const progressLabel = $('py-progress-label');
  const runners = {
    javascript: new JsRunner(),
    python: new PythonRunner({
      onLoadProgress: (p) => {
        if (p.phase === 'loading') {
          progress.hidden = false;
          if (p.total > 0) {
            const pct = Math.floor((100 * p.loaded) / p.total);
            progressBar.value = Math.min(pct, 99);
            progressLabel.textContent = `Loading Python… ${Math.min(pct, 99)}%`;
          } else {
            progressBar.removeAttribute('value');
            progressLabel.textContent = 'Loading Python…';
          }
        } else if (p.phase === 'ready') {
          progress.hidden = true;
        } else if (p.phase === 'error') {
          progressLabel.textContent = 'Python failed to load';
        }
      },
    }),
    html: new HtmlRunner({ container: $('preview') }),
  };
  const myShares = []; // local run entries waiting for their execution_result
  let running = null;
  const runBtn = $('run-btn');
  const stopBtn = $('stop-btn');

  const runCode = async () => {
    if (running) return;
    const lang = language;
    const source = ytext.toString();
    const runner = runners[lang];
    running = runner;
    runBtn.disabled = true;
    stopBtn.disabled = false;
    const me = people.get(userId);
    const entry = output.addRun({ who: 'You', color: me?.color, language: lang, local: true });
    if (lang === 'html') {
      $('preview').querySelector('.empty-hint')?.remove();
      output.select('preview');
    } else {
      output.select('console');
    }
    if (lang === 'python' && !runner.ready) entry.note('loading Python (first run only)');
    let result;
    try {
      result = await runner.run(source, { onOutput: ({ stream, text }) => entry.append(stream, text) });
    } catch (err) {
      result = { status: 'error', output: String(err?.message ?? err), duration_ms: 0 };
      entry.append('stderr', `${result.output}\n`);
    }
    entry.finish(result);
    running = null;
    runBtn.disabled = false;
    stopBtn.disabled = true;
    const payload = { language: lang, output: result.output, status: result.status, duration_ms: result.duration_ms };
    const share = { entry, done: false };
    myShares.push(share);
    connection.request('execute_code', payload).catch(() => {
      const i = myShares.indexOf(share);
      if (i >= 0) myShares.splice(i, 1);
      if (!share.done) entry.note('not shared (offline)');
    });
  };
  const stopCode = () => {
    if (running) running.stop();
  };
  runBtn.addEventListener('click', runCode);
  stopBtn.addEventListener('click', stopCode);
  editor.commands.addCommand({
    name: 'duetRun',
    bindKey: { win: 'Ctrl-Enter', mac: 'Command-Enter' },
    exec: () => runCode(),
    readOnly: true,
  });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey) && !e.defaultPrevented && !document.querySelector('dialog[open]')) {
      e.preventDefault();
      runCode();
    }
  });

  connection.on('execution_result', (r) => {
    if (!r || typeof r !== 'object') return;
    if (r.user_id === userId && myShares.length) {
      const share = myShares.shift();
      share.done = true;
      share.entry.article.dataset.resultId = String(r.id ?? '');
      share.entry.note('shared');
      return;
    }
    const who = r.user_id === userId ? `${r.user_name ?? 'You'} (another tab)` : r.user_name ?? people.get(r.user_id)?.name ?? 'Someone';
    const entry = output.addRun({
      who,
      color: people.get(r.user_id)?.color,
      language: r.language,
      when: r.created_at ? new Date(r.created_at) : new Date(),
    });
    entry.article.dataset.resultId = String(r.id ?? '');
    entry.setText(String(r.output ?? ''));
    entry.finish({ status: ['ok', 'error', 'timeout'].includes(r.status) ? r.status : 'error', duration_ms: r.duration_ms });
    if (document.querySelector('#output[hidden]') && r.language !== 'html') output.select('console');
  });

  window.addEventListener('beforeunload', (e) => {
    if (connection.pending.size > 0) {
      e.preventDefault();
      e.returnValue = '';
    }
  });

  connection.connect();
  setTimeout(() => {
    if (!connection.synced && !connection.fatal) $('editor-cover').textContent = 'Still connecting to the interview… (retrying)';
  }, 8000);

  if (wantShare) share.open();
}

main().catch((err) => {
  showFatal('Something went wrong', `The editor could not start: ${err?.message ?? err}`);
});
