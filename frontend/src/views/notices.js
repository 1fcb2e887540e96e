// Toasts (#toasts) and the activity list (#activity): who joined or left, language switches, the
// server's complaints; for an interviewer, also the others' pastes (listed and toasted) and their
// leaving the page and coming back (listed only: the participants list marks who is away). `toast` is also used by the page before the model exists.
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

export function activity(message, cls = null) {
  const list = $('activity');
  list.append(el('li', cls ? { class: cls } : {}, el('time', {}, timeLabel(new Date())), ' ', message));
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
  model.on('activity', ({ kind, name, size, doc }) => {
    const who = name ?? 'Someone';
    if (kind === 'paste') {
      const where = doc === 'notes' ? ' into the notes' : '';
      const message = `${who} pasted ${size ?? 'some'} character${size === 1 ? '' : 's'}${where}`;
      activity(message, 'activity-paste');
      toast(message);
    } else if (kind === 'blur') activity(`${who} left the page`, 'activity-away');
    else if (kind === 'focus') activity(`${who} came back to the page`, 'activity-back');
  });
  model.on('language-refused', ({ error }) => toast(`The language change was not shared: ${error.message}`, 'warn'));
  model.on('lifecycle', (lc) => {
    const was = lc.previous;
    if (!was) return; // the state found on joining is not news
    const interviewer = model.isInterviewer;
    if (lc.state !== was.state) {
      if (lc.state === 'live') announce('The interview has started');
      else if (lc.state === 'ended') announce('The interview has ended: the code is read-only now');
    }
    if (lc.editing_locked !== was.editing_locked && lc.state !== 'ended') {
      announce(
        lc.editing_locked
          ? interviewer ? 'Candidate editing locked' : 'The interviewer locked editing'
          : interviewer ? 'Candidate editing unlocked' : 'Editing is open again',
      );
    }
    if (lc.runs_enabled !== was.runs_enabled && lc.state !== 'ended') {
      announce(
        lc.runs_enabled
          ? interviewer ? 'Candidates may run code again' : 'Code running is on again'
          : interviewer ? 'Code running turned off for candidates' : 'The interviewer turned code running off',
      );
    }
  });
  model.on('edit-refused', ({ code, dropped }) => {
    const why = { interview_ended: 'the interview has ended', editing_locked: 'the interviewer locked editing', interview_not_started: 'the interview has not started' }[code] ?? 'the server refused it';
    const what = dropped === 1 ? 'Your last edit was' : 'Your last edits were';
    const message = `${what} not saved: ${why}. The code was reloaded from the server.`;
    activity(message);
    toast(message, 'warn');
  });
  model.on('notes-edit-refused', ({ code, dropped }) => {
    const why = code === 'interview_ended' ? 'the interview has ended' : 'the server refused it';
    const what = dropped === 1 ? 'Your last notes edit was' : 'Your last notes edits were';
    const message = `${what} not saved: ${why}. The notes were reloaded from the server.`;
    activity(message);
    toast(message, 'warn');
  });
  model.on('notes-close', () => toast('The private notes are not available to you.', 'warn'));
  model.on('control-refused', ({ error }) => toast(`Not done: ${error.message || error.code}`, 'warn'));
  model.on('server-error', (e) => {
    if (e.code === 'join_timeout') return; // the status indicator already says it
    toast(e.message || 'The server reported an error.', 'warn');
  });
}
