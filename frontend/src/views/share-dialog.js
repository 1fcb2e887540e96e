// The share dialog (#share-dialog): the candidate link and the code with copy buttons, and for an
// interviewer the private interviewer link; opened by the Share button and the code chip.
import { $, copyText } from './dom.js';

const COPIED = { 'copy-link': 'Candidate link', 'copy-code': 'Code', 'copy-interviewer-link': 'Interviewer link' };

/** Wires the dialog for `code`; returns `{open, showInterviewerLink(token)}`. */
export function mountShareDialog(code) {
  const dialog = $('share-dialog');
  const link = `${window.location.origin}/interview/${encodeURIComponent(code)}`;
  $('share-link').value = link;
  $('share-code').value = code;
  const feedback = $('copy-feedback');
  for (const id of Object.keys(COPIED)) {
    const button = $(id);
    button.addEventListener('click', async () => {
      const input = $(button.dataset.copyTarget);
      const ok = await copyText(input.value);
      if (!ok) input.select();
      feedback.textContent = ok ? `${COPIED[id]} copied to the clipboard.` : 'Press Ctrl+C (⌘C) to copy the selected text.';
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
  /** An interviewer holding the interviewer link's token sees that link too (marked private). */
  const showInterviewerLink = (token) => {
    $('share-interviewer-link').value = `${link}#token=${encodeURIComponent(token)}`;
    $('share-interviewer').hidden = false;
  };
  return { open, showInterviewerLink };
}
