// The join dialog (#name-dialog): the name (asked once per browser), and the interview's password
// when it has one; shown again with an inline error when joining fails (wrong password, too many
// attempts, the server unreachable). It cannot be dismissed: a name is needed to join.
import { normalizeName, setName } from '../identity.js';
import { $ } from './dom.js';

let wired = false;
let pending = null; // {resolve, needPassword} while the dialog waits for an answer
let countdown = null;

function wire() {
  if (wired) return;
  wired = true;
  const dialog = $('name-dialog');
  const input = $('name-input');
  dialog.addEventListener('cancel', (e) => e.preventDefault());
  // Browsers let a second Escape close a modal dialog anyway: open it again while an answer is due.
  dialog.addEventListener('close', () => {
    if (pending) {
      dialog.showModal();
      input.focus();
    }
  });
  $('name-form').addEventListener('submit', (e) => {
    if (!pending) return;
    const error = $('name-error');
    const name = normalizeName(input.value);
    const password = $('password-input').value;
    if (!name) {
      e.preventDefault();
      error.textContent = 'Please enter a name (up to 64 characters).';
      error.hidden = false;
      input.focus();
      return;
    }
    if (pending.needPassword && !password) {
      e.preventDefault();
      error.textContent = 'Please enter the interview password the interviewer gave you.';
      error.hidden = false;
      $('password-input').focus();
      return;
    }
    const { resolve } = pending;
    pending = null;
    resolve({ name: setName(name), password });
  });
}

/**
 * Shows the dialog and resolves with `{name, password}` once a valid name (and, when `needPassword`,
 * a password) is given; the name is stored for next time.
 * @param {{name?: string, needPassword?: boolean, error?: string, waitSeconds?: number}} opts
 *   `error`: shown inline; `waitSeconds`: the Join button stays disabled that long (rate limited).
 */
export function askJoin({ name = '', needPassword = false, error = '', waitSeconds = 0 } = {}) {
  wire();
  const dialog = $('name-dialog');
  const input = $('name-input');
  const passwordField = $('password-field');
  const passwordInput = $('password-input');
  const errorBox = $('name-error');
  const button = $('join-btn');
  input.value = name;
  passwordField.hidden = !needPassword;
  passwordInput.required = needPassword;
  if (needPassword) {
    $('name-dialog-title').textContent = 'Join the interview';
    $('name-dialog-text').textContent = 'This interview has a password: the interviewer gave it to you with the link.';
  }
  errorBox.textContent = error;
  errorBox.hidden = !error;
  clearInterval(countdown);
  button.disabled = false;
  button.textContent = 'Join interview';
  if (waitSeconds > 0) {
    let left = Math.ceil(waitSeconds);
    const tick = () => {
      if (left <= 0) {
        clearInterval(countdown);
        button.disabled = false;
        button.textContent = 'Join interview';
        return;
      }
      button.disabled = true;
      button.textContent = `Wait ${left} s`;
      left--;
    };
    tick();
    countdown = setInterval(tick, 1000);
  }
  return new Promise((resolve) => {
    pending = { resolve, needPassword };
    if (!dialog.open) dialog.showModal();
    if (needPassword && name) {
      passwordInput.select();
      passwordInput.focus();
    } else {
      input.focus();
    }
  });
}

/** Asks for the name only; resolves with it. */
export async function askName() {
  return (await askJoin()).name;
}
