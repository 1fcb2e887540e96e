// Review page (/review/<CODE>#token=<interviewer link token>): the interview after (or during) the
// fact, for interviewers. It loads the record (`GET /api/session/<code>/record`) and the code's stored
// history (`/history?doc=code`) with the interviewer link's token, and shows:
//
// - the code at any moment (read-only Ace), from the replay (../replay.js: every update applied once,
//   then any moment is one walk along the document, whatever its place in the history);
// - a timeline with one track per participant: their edits (density), and markers for their runs
//   (output in the detail panel), pastes, time away from the page, joins, leaves and language changes;
//   the interview's start and end on a track of their own;
// - play / pause at 1×–32×, stretches without activity longer than 5 s skipped, and a scrubber;
// - the interviewers' private notes (as they were last saved) beside the code;
// - Download: the export zip (`/export`, fetched with the token).
//
// The token comes from the address bar's fragment (taken out at once, as the editor page does) or from
// what this browser kept for the interview's interviewer link; review-load.js, evaluated first, asks
// for the record and the history before the rest of the bundle (Ace) is even evaluated. A candidate's token gets 403: the page
// says the review is for interviewers.
import { loading } from './review-load.js';
import { createEditor, setEditorLanguage } from '../ace-setup.js';
import { safeColor } from '../ace-yjs.js';
import { LANGUAGES, getExport, languageLabel } from '../api.js';
import { Replay, advance, fromBase64All, textChange } from '../replay.js';
import { $, el } from '../views/dom.js';

function showMessage(title, text) {
  $('review-message-title').textContent = title;
  $('review-message-text').textContent = text;
  $('review-message').hidden = false;
  $('review-main').hidden = true;
  $('timeline').hidden = true;
}

/** What a failed load means for the person looking. */
function loadProblem(err, code) {
  switch (err.status) {
    case 401:
      return ['This review link does not work', 'The link is not valid for this interview (expired or altered). Open the interviewer link again, or ask whoever created the interview for a new one.'];
    case 403:
      return ['The review is for interviewers only', 'This link is not an interviewer link: the interview record — its replay, notes and runs — is shown to the interviewers only. Open the interviewer link instead.'];
    case 404:
      return ['Interview not found', `No interview has the code ${code}. It may have been deleted.`];
    default:
      return ['The review could not be loaded', err.message || 'Something went wrong. Try again shortly.'];
  }
}

const ms = (iso) => {
  const t = Date.parse(iso);
  return Number.isFinite(t) ? t : null;
};

/** h:mm:ss of a duration. */
function duration(d) {
  const s = Math.max(0, Math.floor(d / 1000));
  return `${Math.floor(s / 3600)}:${String(Math.floor(s / 60) % 60).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`;
}

// One formatter for all (toLocaleTimeString makes one per call: a millisecond each, at every marker).
const TIME = new Intl.DateTimeFormat([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });

function clock(t) {
  return TIME.format(t);
}

const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** The markers of the record: `{kind, at, user_id, label, run?}`, and the away stretches. */
export function markersOf(record) {
  const markers = [];
  const away = [];
  const leftAt = new Map(); // user → blur time
  const events = [...(record.events ?? [])].sort((a, b) => (ms(a.at) ?? 0) - (ms(b.at) ?? 0) || (a.seq ?? 0) - (b.seq ?? 0));
  for (const e of events) {
    const at = ms(e.at);
    if (at === null) continue;
    const who = e.user_name || 'Someone';
    const d = e.data && typeof e.data === 'object' ? e.data : {};
    const user = e.user_id ?? null;
    switch (e.kind) {
      case 'paste':
        markers.push({ kind: 'paste', at, user_id: user, label: `${who} pasted ${plural(Number(d.size) || 0, 'character')}${d.doc === 'notes' ? ' into the notes' : ''}` });
        break;
      case 'blur':
        if (!leftAt.has(user)) leftAt.set(user, at);
        markers.push({ kind: 'blur', at, user_id: user, label: `${who} left the page` });
        break;
      case 'focus':
      case 'leave': {
        const from = leftAt.get(user);
        if (from !== undefined) {
          away.push({ user_id: user, from, to: at });
          leftAt.delete(user);
        }
        if (e.kind === 'focus') markers.push({ kind: 'focus', at, user_id: user, label: `${who} came back to the page` });
        else markers.push({ kind: 'leave', at, user_id: user, label: `${who} left the interview` });
        break;
      }
      case 'join':
        markers.push({ kind: 'join', at, user_id: user, label: `${who} joined${d.role ? ` as ${d.role}` : ''}` });
        break;
      case 'language':
        markers.push({ kind: 'language', at, user_id: user, label: `${who} switched to ${languageLabel(d.language)}`, language: d.language });
        break;
      case 'start':
        markers.push({ kind: 'start', at, user_id: null, label: 'The interview started' });
        break;
      case 'end':
        markers.push({ kind: 'end', at, user_id: null, label: 'The interview ended' });
        break;
      default:
        break;
    }
  }
  for (const r of record.runs ?? []) {
    const at = ms(r.created_at);
    if (at === null) continue;
    markers.push({ kind: 'run', at, user_id: r.user_id ?? null, label: `${r.user_name || 'Someone'} ran the code: ${r.status} (${r.duration_ms} ms)`, run: r });
  }
  markers.sort((a, b) => a.at - b.at);
  return { markers, away, openAway: leftAt };
}

const MARKER_GLYPH = { paste: '▲', blur: '◐', focus: '●', join: '+', leave: '−', language: '◆', run: '▶', start: '▷', end: '■' };

class ReviewPage {
  /** `editor`: the page's Ace editor, made while the answers were on their way (see main). */
  constructor(code, token, record, updates, editor) {
    this.editor = editor;
    this.code = code;
    this.token = token;
    this.record = record;
    this.replay = new Replay(updates);
    const { markers, away, openAway } = markersOf(record);
    this.markers = markers;
    // Bounds: the first and last thing that happened (edits, events, runs).
    const times = [];
    if (updates.length) times.push(updates[0].at, this.replay.times[this.replay.length - 1]);
    for (const m of markers) times.push(m.at);
    const created = ms(record.created_at) ?? Date.now();
    let first = times.length ? Infinity : created;
    let last = first;
    for (const t of times) {
      if (t < first) first = t;
      if (t > last || last === Infinity) last = t;
    }
    this.start = first;
    this.end = Math.max(first + 1000, last);
    for (const [user, from] of openAway) away.push({ user_id: user, from, to: this.end });
    this.away = away;
    // Every moment something happened, sorted: what an idle gap is measured against.
    const all = new Float64Array(this.replay.length + markers.length);
    all.set(this.replay.times);
    markers.forEach((m, i) => {
      all[this.replay.length + i] = m.at;
    });
    all.sort();
    this.activity = all;
    this.languages = markers.filter((m) => m.kind === 'language' && LANGUAGES.some((l) => l.id === m.language));
    this.t = this.end;
    this.playing = false;
    this.speed = 8;
    this._shownIndex = -1;
    this._shownText = '';
    this._shownLanguage = null;
  }

  mount() {
    const r = this.record;
    const title = (typeof r.title === 'string' && r.title.trim()) || 'Untitled interview';
    document.title = `Review · ${title} · Duet`;
    $('review-title').textContent = `Review · ${title}`;
    $('review-code').textContent = this.code;
    const state = $('review-state');
    state.textContent = r.state === 'ended' ? 'Ended' : r.state === 'live' ? 'Live' : 'Not started';
    state.hidden = false;
    $('review-notes').textContent = r.notes || 'No notes were taken.';
    $('review-main').hidden = false;
    $('timeline').hidden = false;

    // Made while hidden: measured now that it shows (drawn in the next frame, as a new editor is). Its
    // language is set by the first seek.
    this.editor.resize();

    const scrubber = $('scrubber');
    scrubber.max = String(Math.round(this.end - this.start));
    scrubber.addEventListener('input', () => this.seek(this.start + Number(scrubber.value), { fromScrubber: true }));
    const speed = $('speed');
    this.speed = Number(speed.value);
    speed.addEventListener('change', () => {
      this.speed = Number(speed.value) || 1;
    });
    $('play-btn').addEventListener('click', () => (this.playing ? this.pause() : this.play()));
    const download = $('download-btn');
    download.disabled = false;
    download.addEventListener('click', () => this.download(download));

    this.renderTracks();
    this.seek(this.t);
  }

  /** The language at `t`: the last change before it, else the interview's language. */
  languageAt(t) {
    let lang = null;
    for (const m of this.languages) if (m.at <= t) lang = m.language;
    if (lang) return lang;
    return LANGUAGES.some((l) => l.id === this.record.language) ? this.record.language : 'javascript';
  }

  pct(t) {
    return ((t - this.start) / (this.end - this.start)) * 100;
  }

  renderTracks() {
    const tracks = $('tracks');
    const people = [...(this.record.participants ?? [])];
    const known = new Set(people.map((p) => p.user_id));
    const orphan = this.replay.updates.some((u) => !known.has(u.author)) || this.markers.some((m) => m.user_id && !known.has(m.user_id) && m.kind !== 'start' && m.kind !== 'end');
    const rows = [{ user_id: '__interview__', name: 'Interview', color: null, role: null }, ...people];
    if (orphan) rows.push({ user_id: '__other__', name: 'Others', color: null, role: null });
    const rowOf = (userId, kind) => {
      if (kind === 'start' || kind === 'end') return '__interview__';
      if (userId && known.has(userId)) return userId;
      return orphan ? '__other__' : '__interview__';
    };
    this.playheads = [];
    this.canvases = [];
    tracks.replaceChildren(
      ...rows.map((p) => {
        const lane = el('div', { class: 'track-lane' });
        const canvas = el('canvas', { class: 'track-edits', 'aria-hidden': 'true' });
        lane.append(canvas);
        this.canvases.push({ canvas, user: p.user_id, color: safeColor(p.color) });
        for (const a of this.away) {
          if (rowOf(a.user_id, 'blur') !== p.user_id) continue;
          lane.append(el('div', { class: 'away-band', style: `left:${this.pct(a.from)}%;width:${Math.max(0.2, this.pct(a.to) - this.pct(a.from))}%`, title: `Away from the page for ${duration(a.to - a.from)}` }));
        }
        for (const m of this.markers) {
          if (rowOf(m.user_id, m.kind) !== p.user_id) continue;
          const b = el(
            'button',
            { type: 'button', class: `marker marker-${m.kind}`, dataset: { kind: m.kind }, style: `left:${this.pct(m.at)}%`, title: `${clock(m.at)} — ${m.label}`, 'aria-label': `${clock(m.at)}: ${m.label}` },
            MARKER_GLYPH[m.kind] ?? '•',
          );
          b.addEventListener('click', () => this.select(m));
          lane.append(b);
        }
        const head = el('div', { class: 'playhead', 'aria-hidden': 'true' });
        this.playheads.push(head);
        lane.append(head);
        const role = p.role ? ` (${p.role})` : '';
        return el(
          'div',
          { class: 'track', dataset: { userId: p.user_id } },
          el('span', { class: 'track-label', title: `${p.name}${role}` }, p.color ? el('span', { class: 'swatch', style: `--c:${safeColor(p.color)}` }) : null, p.name),
          lane,
        );
      }),
    );
    // Each update's track (its index in this.canvases; -1: none), for the density strips.
    const tracksOf = new Map();
    this.canvases.forEach((c, k) => {
      if (c.user === '__interview__') return; // the interview's own track has no edits
      const list = tracksOf.get(c.user);
      if (list) list.push(k);
      else tracksOf.set(c.user, [k]);
    });
    const others = tracksOf.get('__other__') ?? null;
    this.trackOf = this.replay.updates.map((u) => (known.has(u.author) ? tracksOf.get(u.author) : others) ?? null);
    const draw = () => this.drawEdits();
    draw();
    if (typeof ResizeObserver === 'function') new ResizeObserver(draw).observe(tracks);
  }

  /** Each track's edits as a density strip: how many of its updates fall in each pixel column. */
  drawEdits() {
    const dpr = window.devicePixelRatio || 1;
    for (const c of this.canvases) {
      c.w = Math.max(1, Math.round(c.canvas.clientWidth * dpr));
      c.h = Math.max(1, Math.round(c.canvas.clientHeight * dpr));
      c.counts = new Uint32Array(c.w);
      c.max = 0;
    }
    // One pass over the updates for all tracks.
    const { trackOf, canvases, start } = this;
    const { times } = this.replay;
    const span = this.end - start;
    for (let i = 0; i < trackOf.length; i++) {
      const tracks = trackOf[i];
      if (tracks === null) continue;
      const f = (times[i] - start) / span;
      for (let j = 0; j < tracks.length; j++) {
        const c = canvases[tracks[j]];
        const x = Math.min(c.w - 1, Math.floor(f * c.w));
        if (++c.counts[x] > c.max) c.max = c.counts[x];
      }
    }
    for (const { canvas, color, w, h, counts, max } of this.canvases) {
      canvas.width = w;
      canvas.height = h;
      const ctx = canvas.getContext('2d');
      ctx.clearRect(0, 0, w, h);
      if (!max) continue;
      ctx.fillStyle = color;
      for (let x = 0; x < w; x++) {
        if (!counts[x]) continue;
        const bar = Math.max(2 * dpr, Math.sqrt(counts[x] / max) * h);
        ctx.fillRect(x, h - bar, 1, bar);
      }
    }
  }

  /** A marker chosen: the replay goes there, and the detail panel says what it was. */
  select(m) {
    this.pause();
    this.seek(m.at);
    const detail = $('review-detail');
    const rows = [el('p', { class: 'detail-line' }, el('time', {}, clock(m.at)), ' ', m.label)];
    if (m.run) {
      const r = m.run;
      rows.push(el('p', { class: 'hint' }, `${languageLabel(r.language)} · ${r.status} · ${r.duration_ms} ms`), el('pre', { class: 'run-output', id: 'review-run-output' }, r.output || '(no output)'));
    }
    detail.replaceChildren(...rows);
  }

  /** Shows the interview at `t`. */
  seek(t, { fromScrubber = false } = {}) {
    this.t = Math.min(Math.max(t, this.start), this.end);
    const index = this.replay.indexAt(this.t);
    if (index !== this._shownIndex) {
      this._show(this.replay.textAt(index));
      this._shownIndex = index;
    }
    const lang = this.languageAt(this.t);
    if (lang !== this._shownLanguage) {
      setEditorLanguage(this.editor, lang);
      $('review-language').textContent = languageLabel(lang);
      this._shownLanguage = lang;
    }
    if (!fromScrubber) $('scrubber').value = String(Math.round(this.t - this.start));
    const left = `${this.pct(this.t)}%`;
    for (const h of this.playheads) h.style.left = left;
    $('review-clock').textContent = clock(this.t);
    $('review-elapsed').textContent = `${duration(this.t - this.start)} / ${duration(this.end - this.start)}`;
    $('review-edits').textContent = `${index} of ${plural(this.replay.length, 'edit')}`;
  }

  /** Puts `text` in the editor as one replacement of what changed (not a whole new document). */
  _show(text) {
    const change = textChange(this._shownText, text);
    this._shownText = text;
    if (!change) return;
    const doc = this.editor.session.doc;
    if (text.includes('\r') || change.text.length > text.length / 2) {
      // Ace reads \r\n as one line break (offsets would not match), and a mostly new text is
      // cheaper as a whole.
      doc.setValue(text);
      return;
    }
    const from = doc.indexToPosition(change.start, 0);
    const to = doc.indexToPosition(change.end, 0);
    doc.replace({ start: from, end: to }, change.text);
  }

  play() {
    if (this.playing) return;
    if (this.t >= this.end) this.seek(this.start);
    this.playing = true;
    const button = $('play-btn');
    button.textContent = '⏸';
    button.setAttribute('aria-label', 'Pause');
    let last = performance.now();
    const frame = (now) => {
      if (!this.playing) return;
      const next = advance(this.t, now - last, this.speed, this.activity, this.end);
      last = now;
      this.seek(next);
      if (this.t >= this.end) this.pause();
      else this._raf = requestAnimationFrame(frame);
    };
    this._raf = requestAnimationFrame(frame);
  }

  pause() {
    this.playing = false;
    cancelAnimationFrame(this._raf);
    const button = $('play-btn');
    button.textContent = '▶';
    button.setAttribute('aria-label', 'Play');
  }

  async download(button) {
    button.disabled = true;
    try {
      const blob = await getExport(this.code, this.token);
      const url = URL.createObjectURL(blob);
      const a = el('a', { href: url, download: `duet-${this.code}.zip`, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    } catch (err) {
      $('review-detail').replaceChildren(el('p', { class: 'form-error' }, `The download failed: ${err.message}`));
    } finally {
      button.disabled = false;
    }
  }
}

async function main() {
  // The token left the address bar and the answers are on their way already (review-load.js).
  const { code, token, answers } = loading;
  if (!code) {
    showMessage('Interview not found', 'This link does not contain a valid interview code.');
    return;
  }
  if (!token) {
    showMessage('The review needs the interviewer link', 'Open this page from the interviewer link (it carries the interviewer\'s key): the interview record is shown to interviewers only.');
    return;
  }
  // While the answers are on their way (the main thread has nothing else to do): the editor, Ace's
  // first one in the page (about 0.1 s), in the workspace still hidden. First a turn of the event loop
  // after the bundle's own evaluation (~0.1 s): the history's body is read on this thread, and 4 MB
  // waits for it: without the turn it was read only once the editor was made too (with the release
  // server, /history took 0.22-0.29 s from being asked for to its last byte; with it, 0.16-0.24 s).
  await new Promise((resolve) => setTimeout(resolve, 0));
  const editor = createEditor($('editor'));
  editor.setReadOnly(true);
  editor.setOption('textInputAriaLabel', 'The code at the chosen moment (read-only)');
  let record;
  let history;
  try {
    [record, history] = await answers;
  } catch (err) {
    const [title, text] = loadProblem(err, code);
    showMessage(title, text);
    return;
  }
  const fetched = performance.now();
  const stored = history?.updates ?? [];
  const bytes = fromBase64All(stored.map((u) => u.data));
  const updates = stored.map((u, i) => ({ at: ms(u.at) ?? 0, author: u.author ?? null, data: bytes[i] }));
  const page = new ReviewPage(code, token, record, updates, editor);
  const built = performance.now();
  page.mount();
  // For the tests and the benchmark (tests/bench/replay.mjs): milliseconds since the navigation began.
  page.timings = { requested: loading.started, fetched, built, ready: performance.now() };
  window.duetReview = page;
  document.body.dataset.ready = 'true';
}

main().catch((err) => {
  showMessage('Something went wrong', `The review could not start: ${err?.message ?? err}`);
});
