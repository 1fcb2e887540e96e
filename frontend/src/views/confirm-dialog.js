// A confirmation in a native modal dialog (#confirm-dialog): ending the interview, removing someone.
import { $ } from './dom.js';

/** Resolves true when the user confirms, false when they cancel (button, Escape, backdrop). */
export function confirmAction({ title, message, confirm = 'Confirm' }) {
  const dialog = $('confirm-dialog');
  $('confirm-title').textContent = title;
  $('confirm-message').textContent = message;
  $('confirm-ok').textContent = confirm;
  dialog.returnValue = '';
  return new Promise((resolve) => {
    const onClick = (e) => {
      if (e.target === dialog) dialog.close('cancel'); // the backdrop
    };
    dialog.addEventListener('click', onClick);
    dialog.addEventListener(
      'close',
      () => {
        dialog.removeEventListener('click', onClick);
        resolve(dialog.returnValue === 'ok');
      },
      { once: true },
    );
    dialog.showModal();
    $('confirm-cancel').focus();
  });
}
