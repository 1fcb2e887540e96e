// Landing page: create an interview, or join one by its code.
import { CODE_RE, createSession, getSession, normalizeCode } from '../api.js';
import { getName, getUserId, normalizeName, requestShareDialog, setName } from '../identity.js';

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
    const submit = $('create-submit');
    busy(submit, true, 'Creating…');
    try {
      const session = await createSession({ language, title });
      setName(name);
      requestShareDialog(session.session_code);
      window.location.assign(`/interview/${encodeURIComponent(session.session_code)}`);
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
