// Toasts (#toasts) and the activity list (#activity): who joined or left, language switches, the
// server's complaints. `toast` is also used by the page before the model exists.
import { languageLabel } from '../api.js';
import { $, el, timeLabel } from './dom.js';

/** Toasts shown at once; older ones are dropped. */
const MAX_TOASTS = 4;
const TOAST_MS = 4000;
/** Activity lines kept: enough to scroll back through an interview's recent history. */
const MAX_ACTIVITY = 50;

export function toast(message, kind = 'info') {
  const box = $('toasts');
  const t = el('div', { class: `toast toast-${kind}` }, message);
  box.append(t);
  while (box.childElementCount > MAX_TOASTS) box.firstElementChild.remove();
  setTimeout(() => {
    t.classList.add('toast-out');
    setTimeout(() => t.remove(), 300);
  }, TOAST_MS);
}

export function activity(message) {
  const list = $('activity');
  list.append(el('li', {}, el('time', {}, timeLabel(new Date())), ' ', message));
  while (list.childElementCount > MAX_ACTIVITY) list.firstElementChild.remove();
  list.scrollTop = list.scrollHeight;
}

/** Subscribes the toasts and the activity list to the model. */
export function mountNotices(model) {
  const announce = (message) => {
    activity(message);
    toast(message);
  };
  model.on('joined', ({ rejoin }) => activity(rejoin ? 'Reconnected.' : 'You joined the interview.'));
  model.on('participant-joined', ({ name }) => announce(`${name ?? 'Someone'} joined`));
  model.on('participant-left', ({ name }) => announce(`${name ?? 'Someone'} left`));
  model.on('language', ({ language, source, by }) => {
    if (source !== 'local' && source !== 'remote') return; // joins, syncs and reverts are not news
    const who = by?.self ? 'You' : by?.name ?? 'Someone';
    announce(`${who} switched the language to ${languageLabel(language)}`);
  });
  model.on('language-refused', ({ error }) => toast(`The language change was not shared: ${error.message}`, 'warn'));
  model.on('server-error', (e) => {
    if (e.code === 'join_timeout') return; // the status indicator already says it
    toast(e.message || 'The server reported an error.', 'warn');
  });
}
