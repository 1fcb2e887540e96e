// The share dialog (#share-dialog): the interview's link and code with copy buttons; opened by the
// Share button and the code chip.
import { $, el } from './dom.js';

async function copyText(text) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    /* fall back below */
  }
  const ta = el('textarea', { style: 'position:fixed;opacity:0;top:0;left:0' });
  ta.value = text;
  document.body.append(ta);
  ta.select();
  let ok = false;
  try {
    ok = document.execCommand('copy');
  } catch {
    ok = false;
  }
  ta.remove();
  return ok;
}

/** Wires the dialog for `code`; returns `{open}`. */
export function mountShareDialog(code) {
  const dialog = $('share-dialog');
  const link = `${window.location.origin}/interview/${encodeURIComponent(code)}`;
  $('share-link').value = link;
  $('share-code').value = code;
  const feedback = $('copy-feedback');
  for (const id of ['copy-link', 'copy-code']) {
    const button = $(id);
    button.addEventListener('click', async () => {
      const input = $(button.dataset.copyTarget);
      const ok = await copyText(input.value);
      if (!ok) input.select();
      feedback.textContent = ok
        ? `${id === 'copy-link' ? 'Link' : 'Code'} copied to the clipboard.`
        : 'Press Ctrl+C (⌘C) to copy the selected text.';
    });
  }
  const open = () => {
    feedback.textContent = '';
    if (!dialog.open) dialog.showModal();
    $('copy-link').focus();
  };
  $('share-btn').addEventListener('click', open);
  $('code-chip').addEventListener('click', open);
  dialog.addEventListener('click', (e) => {
    if (e.target === dialog) dialog.close(); // click on the backdrop
  });
  return { open };
}
