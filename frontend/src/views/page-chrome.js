// What surrounds the editor: the title and code chip in the top bar, the page title, and the
// full-page message (#fatal) when the page cannot (or can no longer) show the interview.
import { $ } from './dom.js';

export function showInterview({ code, title }) {
  $('code-chip').textContent = code;
  $('code-chip').setAttribute('aria-label', `Interview code ${code}. Share`);
  if (title !== undefined) {
    $('session-title').textContent = title;
    document.title = `${title} · Duet`;
  }
}

export function showFatal(title, message) {
  $('fatal-title').textContent = title;
  $('fatal-message').textContent = message;
  $('fatal').hidden = false;
  document.body.classList.add('has-fatal');
  document.title = `${title} · Duet`;
}

export const notFoundMessage = (code) => `No interview has the code ${code}. Check the link or ask for a new one.`;

/** The model's `fatal` event ends the page with a message. */
export function mountFatal(model, code) {
  model.on('fatal', (e) => {
    if (e.code === 'session_not_found') showFatal('Interview not found', notFoundMessage(code));
    else if (e.code === 'removed') showFatal('You were removed from this interview', 'An interviewer removed you from this interview. Ask them if you think this was a mistake.');
    else showFatal('Cannot join this interview', e.message || 'The server refused to let this page join.');
  });
}
