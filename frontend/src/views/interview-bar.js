// The interview's lifecycle in the page: the state chip in the top bar with the time since the start
// (#lifecycle, #elapsed), the role badge, the interviewer's Start and End buttons (End asks first), the
// banner under the toolbar (#interview-banner: ended, locked, waiting), and the candidate's lobby
// (#lobby: while the interview waits, a candidate sees it instead of the editor). Once it has ended, an
// interviewer's banner links to the review page (#review-link, /review/<CODE>: it finds the interviewer
// link's token this browser kept).
import { confirmAction } from './confirm-dialog.js';
import { $, el } from './dom.js';

/** "4:05", "1:02:09" for a duration in milliseconds (never negative). */
export function formatElapsed(ms) {
  const total = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

const STATE_LABELS = { waiting: 'Waiting to start', live: 'Live', ended: 'Ended' };

function bannerText(model) {
  const lc = model.lifecycle;
  const p = model.permissions;
  if (!lc) return null;
  if (lc.state === 'ended') {
    return model.isInterviewer
      ? 'This interview has ended. The final code is shown read-only; the runs stay in the Output panel.'
      : 'This interview has ended. Thank you! The final code is shown read-only.';
  }
  if (model.isInterviewer) {
    if (lc.state === 'waiting') return 'The candidate waits in the lobby until you press Start interview. You can prepare the code now.';
    return null;
  }
  if (p.editReason === 'locked') return 'The interviewer has locked editing: you can read along, but not type.';
  return null;
}

export function mountInterviewBar(model) {
  const chip = $('lifecycle');
  const label = $('lifecycle-label');
  const elapsed = $('elapsed');
  const badge = $('role-badge');
  const startBtn = $('start-btn');
  const endBtn = $('end-btn');
  const banner = $('interview-banner');
  const lobby = $('lobby');
  let timer = null;

  const tickElapsed = () => {
    const lc = model.lifecycle;
    const started = Date.parse(lc?.started_at ?? '');
    if (!lc || lc.state === 'waiting' || Number.isNaN(started)) {
      elapsed.hidden = true;
      return;
    }
    const end = lc.state === 'ended' ? Date.parse(lc.ended_at ?? '') : Date.now();
    const ms = (Number.isNaN(end) ? Date.now() : end) - started;
    elapsed.hidden = false;
    elapsed.textContent = formatElapsed(ms);
    elapsed.dateTime = `PT${Math.max(0, Math.floor(ms / 1000))}S`;
    elapsed.title = lc.state === 'ended' ? 'How long the interview lasted' : 'Time since the interview started';
  };

  const render = () => {
    const lc = model.lifecycle;
    const p = model.permissions;
    chip.hidden = !lc;
    chip.dataset.state = lc?.state ?? '';
    label.textContent = lc ? STATE_LABELS[lc.state] : '';
    tickElapsed();
    clearInterval(timer);
    timer = lc?.state === 'live' ? setInterval(tickElapsed, 1000) : null;

    badge.hidden = !model.role;
    badge.textContent = model.role === 'interviewer' ? 'Interviewer' : 'Candidate';
    badge.dataset.role = model.role ?? '';

    startBtn.hidden = !(p.control && lc?.state === 'waiting');
    endBtn.hidden = !(p.control && lc?.state === 'live');

    const text = bannerText(model);
    banner.hidden = !text;
    banner.textContent = text ?? '';
    const review = window.location.pathname.replace(/^\/interview\//, '/review/');
    if (lc?.state === 'ended' && model.isInterviewer && review.startsWith('/review/')) {
      banner.append(' ', el('a', { id: 'review-link', href: review }, 'Open the review (replay, notes, download)'));
    }
    banner.dataset.kind = lc?.state === 'ended' ? 'ended' : p.editReason === 'locked' ? 'locked' : lc?.state ?? '';

    lobby.hidden = !p.lobby;
    document.body.toggleAttribute('data-lobby', p.lobby);
  };

  const busy = async (button, fn) => {
    button.disabled = true;
    try {
      await fn();
    } finally {
      button.disabled = false;
    }
  };
  startBtn.addEventListener('click', () => busy(startBtn, () => model.startInterview()));
  endBtn.addEventListener('click', () =>
    busy(endBtn, async () => {
      const ok = await confirmAction({
        title: 'End the interview?',
        message: 'Everyone’s editor becomes read-only for good and runs are no longer shared. This cannot be undone.',
        confirm: 'End interview',
      });
      if (ok) await model.endInterview();
    }),
  );

  const people = () => {
    const n = model.participants.length;
    $('lobby-people').textContent = n > 1 ? `${n} people are here, you included.` : '';
  };
  model.on('participants', people);
  people();

  render();
  model.on('role', render);
  model.on('lifecycle', render);
  model.on('permissions', render);
}

/** The interview's title in the lobby card. */
export function showLobbyTitle(title) {
  $('lobby-interview').textContent = title;
}
