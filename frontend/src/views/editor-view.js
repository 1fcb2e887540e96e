// The code editor: Ace bound to the shared Y.Text (ace-yjs.js), read-only behind a cover until the
// first sync, its mode following the interview's language, this user's name and colour in awareness
// (what the others' remote cursors show), Ctrl/⌘+Enter to run.
import { AceBinding, safeColor } from '../ace-yjs.js';
import { createEditor, setEditorLanguage } from '../ace-setup.js';
import { $ } from './dom.js';

/** After this long without a first sync the cover says the page is still trying. */
const STILL_CONNECTING_MS = 8000;

export class EditorView {
  /**
   * @param {import('../session-model.js').SessionModel} model
   * @param {{ytext: import('yjs').Text, awareness: import('y-protocols/awareness').Awareness, focusOnSync?: boolean}} opts
   */
  constructor(model, { ytext, awareness, focusOnSync = true }) {
    const doc = ytext.doc;
    const cover = $('editor-cover');
    const setUser = (self) => awareness.setLocalStateField('user', { name: self.name, color: safeColor(self.color, doc.clientID) });
    setUser(model.self);

    this.editor = createEditor($('editor'), {
      language: model.language,
      placeholder: 'Start typing — everyone here sees it live. Ctrl+Enter runs the code.',
    });
    const editor = this.editor;
    editor.setReadOnly(!model.synced);
    this.binding = new AceBinding(ytext, editor, awareness);

    // The skip link lands in the editor itself (Ace's text input), not just next to it.
    document.querySelector('.skip-link')?.addEventListener('click', (e) => {
      e.preventDefault();
      editor.focus();
    });
    editor.commands.addCommand({
      name: 'duetRun',
      bindKey: { win: 'Ctrl-Enter', mac: 'Command-Enter' },
      exec: () => model.run(),
      readOnly: true,
    });

    model.on('self', setUser);
    model.on('language', ({ language }) => setEditorLanguage(editor, language));
    model.on('synced', () => {
      editor.setReadOnly(false);
      cover.hidden = true;
      if (focusOnSync) editor.focus();
    });
    setTimeout(() => {
      if (!model.synced && !model.fatal) cover.textContent = 'Still connecting to the interview… (retrying)';
    }, STILL_CONNECTING_MS);
  }
}
