// The output panel: the Output tab (#output), one entry per run — this page's own, streamed as they
// run, and everyone's shared results — and the Preview tab (#preview) where HTML runs render.
import { safeColor } from '../ace-yjs.js';
import { languageLabel } from '../api.js';
import { $, el, timeLabel } from './dom.js';

/** Run entries kept in the Output tab. */
const MAX_ENTRIES = 60;
/** Within this many pixels of the bottom, the log keeps following new output. */
const STICKY_PX = 40;

const statusLabel = (st) => (st === 'ok' ? 'ok' : st === 'timeout' ? 'timed out' : 'error');

/** How a run is labelled: "You", "Ann (another tab)" for this user's other tabs, or the runner's name. */
function whoRan(run) {
  if (run.local) return 'You';
  if (run.mine) return `${run.user_name ?? 'You'} (another tab)`;
  return run.user_name ?? 'Someone';
}

export class RunsPanel {
  constructor(model) {
    this.log = $('output');
    this.preview = $('preview');
    this.tabs = { console: $('tab-console'), preview: $('tab-preview') };
    /** run.key → its entry (entries removed by Clear or the size limit stay here harmlessly until then) */
    this.entries = new Map();
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
      this.entries.clear();
    });

    model.on('run-added', ({ run }) => this._added(run));
    model.on('run-output', ({ run, stream, text }) => this.entries.get(run.key)?.append(stream, text));
    model.on('run-finished', ({ run }) => this.entries.get(run.key)?.finish(run));
    model.on('run-shared', ({ run }) => {
      const entry = this.entries.get(run.key);
      if (!entry) return;
      entry.article.dataset.resultId = run.id ?? '';
      entry.note('shared');
    });
    model.on('run-not-shared', ({ run, error }) => {
      const why = error?.code === 'offline' ? 'offline' : error?.code === 'interview_ended' ? 'the interview has ended' : error?.message || 'refused';
      this.entries.get(run.key)?.note(`not shared (${why})`);
    });
  }

  /** Where the HTML runner renders. */
  get previewContainer() {
    return this.preview;
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

  _added(run) {
    const entry = this._entry(run);
    this.entries.set(run.key, entry);
    if (run.local) {
      // This page's run: show where its output goes.
      if (run.language === 'html') {
        this.preview.querySelector('.empty-hint')?.remove();
        this.select('preview');
      } else {
        this.select('console');
      }
      for (const n of run.notes) entry.note(n);
    } else {
      entry.article.dataset.resultId = run.id ?? '';
      entry.setText(run.output);
      entry.finish(run);
      if (this.log.hidden && run.language !== 'html') this.select('console');
    }
  }

  _atBottom() {
    return this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < STICKY_PX;
  }

  /** A run entry; returns helpers to stream output into it and finish it. */
  _entry(run) {
    this.log.querySelector('.empty-hint')?.remove();
    const stick = this._atBottom();
    const status = run.local ? 'running' : run.status;
    const cls = (st) => `run run-${st}${run.local ? ' run-local' : ''}`;
    const statusEl = el('span', { class: 'run-status' }, status === 'running' ? 'running…' : status);
    const meta = el('span', { class: 'run-meta' });
    const pre = el('pre', { class: 'run-output' });
    const article = el(
      'article',
      { class: cls(status), dataset: { status } },
      el(
        'header',
        { class: 'run-header' },
        el('span', { class: 'who-dot', style: `--c:${safeColor(run.color)}` }),
        el('strong', { class: 'run-who' }, whoRan(run)),
        ` ran ${languageLabel(run.language)} `,
        statusEl,
        meta,
        el('time', { class: 'run-time', datetime: run.created_at.toISOString() }, timeLabel(run.created_at)),
      ),
      pre,
    );
    this.log.append(article);
    while (this.log.childElementCount > MAX_ENTRIES) this.log.firstElementChild.remove();
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
        article.className = cls(st);
        article.dataset.status = st;
        statusEl.textContent = statusLabel(st);
        meta.textContent = typeof duration_ms === 'number' ? ` · ${duration_ms} ms` : '';
        if (!pre.textContent) append('stdout', '(no output)\n');
      },
      note: (text) => meta.append(el('span', { class: 'run-note' }, ` · ${text}`)),
    };
  }
}
