// Landing page: create an interview (optionally with a lobby and a password; then both links are
// shown, the interviewer's marked private), or join one by its code.
import { CODE_RE, createSession, getSession, normalizeCode } from '../api.js';
import { setLinkToken } from '../credentials.js';
import { getName, getUserId, normalizeName, requestShareDialog, setName } from '../identity.js';
import { copyText } from '../views/dom.js';

const $ = (id) => document.getElementById(id);

function showError(el, message) {
  el.textContent = message;
  el.hidden = !message;
}

function busy(button, on, label) {
  button.disabled = on;
  if (on) {
    button.dataset.label = button.textContent;
    button.textContent = label;
  } else if (button.dataset.label) {
    button.textContent = button.dataset.label;
  }
}

/** After creating: the code, both links (the interviewer's marked private) and the way in. */
function showCreated(session, { lobby, password }) {
  const code = session.session_code;
  $('created-code').textContent = code;
  const extras = [lobby ? 'starts in a lobby' : 'live now', password ? 'password protected' : null].filter(Boolean);
  $('created-extras').textContent = ` · ${extras.join(' · ')}`;
  // The links on this page's own origin (the one this browser reached Duet at), in the server's form.
  const candidate = `${window.location.origin}/interview/${encodeURIComponent(code)}`;
  const interviewer = `${candidate}#token=${encodeURIComponent(session.interviewer_token)}`;
  $('created-candidate-link').value = candidate;
  $('created-interviewer-link').value = interviewer;
  $('open-interview').href = interviewer;
  const feedback = $('copy-feedback');
  for (const [id, what] of [
    ['copy-candidate-link', 'Candidate link'],
    ['copy-interviewer-link', 'Interviewer link'],
  ]) {
    const button = $(id);
    button.addEventListener('click', async () => {
      const input = $(button.dataset.copyTarget);
      const ok = await copyText(input.value);
      if (!ok) input.select();
      feedback.textContent = ok ? `${what} copied to the clipboard.` : 'Press Ctrl+C (⌘C) to copy the selected text.';
    });
  }
  document.querySelector('.cards').hidden = true;
  $('created').hidden = false;
  $('open-interview').focus();
}

function init() {
  getUserId(); // make sure this browser has its stable id before anything else
  const createForm = $('create-form');
  const nameInput = $('create-name');
  const createError = $('create-error');
  const joinForm = $('join-form');
  const codeInput = $('join-code');
  const joinError = $('join-error');

  nameInput.value = getName();

  createForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    showError(createError, '');
    const name = normalizeName(nameInput.value);
    if (!name) {
      showError(createError, 'Please enter your name: the others will see it next to your cursor.');
      nameInput.focus();
      return;
    }
    const language = $('create-language').value;
    const title = $('create-title-input').value.trim();
    const lobby = $('create-lobby').checked;
    const password = $('create-password').value;
    const submit = $('create-submit');
    busy(submit, true, 'Creating…');
    try {
      const session = await createSession({ language, title, lobby, password });
      setName(name);
      if (typeof session.interviewer_token === 'string' && session.interviewer_token) {
        // Kept now, so the interview page knows this browser is the interviewer's even if the link
        // is opened without its fragment.
        setLinkToken(session.session_code, session.interviewer_token);
        showCreated(session, { lobby, password });
      } else {
        // A server without tokens: straight to the interview, with the share dialog open.
        requestShareDialog(session.session_code);
        window.location.assign(`/interview/${encodeURIComponent(session.session_code)}`);
      }
    } catch (err) {
      showError(createError, `Could not create the interview: ${err.message}`);
      busy(submit, false);
    }
  });

  codeInput.addEventListener('input', () => showError(joinError, ''));

  joinForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    showError(joinError, '');
    const code = normalizeCode(codeInput.value);
    if (!code) {
      showError(joinError, 'Enter the interview code you were given.');
      codeInput.focus();
      return;
    }
    if (!CODE_RE.test(code)) {
      showError(joinError, `“${code.slice(0, 16)}” is not an interview code: codes are 8 letters and digits (no I, L, O or U).`);
      codeInput.focus();
      return;
    }
    const submit = $('join-submit');
    busy(submit, true, 'Checking…');
    try {
      const session = await getSession(code);
      window.location.assign(`/interview/${encodeURIComponent(session.session_code || code)}`);
    } catch (err) {
      busy(submit, false);
      if (err.status === 404) {
        showError(joinError, `No interview has the code ${code}. Check it and try again.`);
      } else {
        showError(joinError, `Could not check the code: ${err.message}`);
      }
      codeInput.focus();
      codeInput.select();
    }
  });
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
else init();
