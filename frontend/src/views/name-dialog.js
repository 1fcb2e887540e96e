// The name dialog (#name-dialog): asked once per browser, before joining; it cannot be dismissed.
import { normalizeName, setName } from '../identity.js';
import { $ } from './dom.js';

/** Shows the dialog until a valid name is given; resolves with it (also stored for next time). */
export function askName() {
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
