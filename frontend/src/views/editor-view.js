// The code editor: Ace bound to the shared Y.Text (ace-yjs.js), read-only behind a cover until the
// first sync, then editable as far as the interview allows (the model's `permissions`: read-only once
// ended, for a locked candidate, while a refused edit is being resynced), its mode following the
// interview's language, this user's name and colour in awareness (what the others' remote cursors
// show), Ctrl/⌘+Enter to run.
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
    this.model = model;
    const cover = $('editor-cover');
    this.awareness = awareness;
    this._setUser();

    this.editor = createEditor($('editor'), {
      language: model.language,
      placeholder: 'Start typing — everyone here sees it live. Ctrl+Enter runs the code.',
    });
    const editor = this.editor;
    editor.setReadOnly(true);
    this.binding = new AceBinding(ytext, editor, awareness);
    this._next = null; // {ytext, awareness} waiting for the resync before it is bound

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

    let lobby = model.permissions.lobby;
    const apply = (p) => {
      editor.setReadOnly(!p.editable);
      $('editor').dataset.readonly = p.editable ? 'false' : 'true';
      if (lobby && !p.lobby) editor.resize(true); // it was not laid out while the lobby hid it
      // Nobody sees a cursor in an editor the lobby hides: none is shown to the others.
      if (lobby !== p.lobby) this.binding.hideCursor(p.lobby);
      lobby = p.lobby;
    };
    model.on('self', () => this._setUser());
    model.on('language', ({ language }) => setEditorLanguage(editor, language));
    model.on('synced', () => {
      cover.hidden = true;
      apply(model.permissions);
      if (focusOnSync && model.permissions.editable) editor.focus();
    });
    model.on('permissions', apply);
    model.on('resynced', () => this._bindNext());
    setTimeout(() => {
      if (!model.synced && !model.fatal) cover.textContent = 'Still connecting to the interview… (retrying)';
    }, STILL_CONNECTING_MS);
  }

  _setUser() {
    const self = this.model.self;
    this.awareness.setLocalStateField('user', { name: self.name, color: safeColor(self.color, this.awareness.clientID) });
  }

  /**
   * A new document replaces the current one (after a refused edit): the old binding goes now — the
   * editor keeps showing the old text, read-only — and the new one is bound once the server has filled
   * the new document (`resynced`), keeping the cursor and the scroll position.
   */
  replaceDoc(ytext, awareness) {
    this.binding.destroy();
    this.editor.setReadOnly(true);
    this.awareness = awareness;
    this._setUser();
    this._next = { ytext, awareness };
  }

  _bindNext() {
    if (!this._next) return;
    const { ytext, awareness } = this._next;
    this._next = null;
    const editor = this.editor;
    const cursor = editor.getCursorPosition();
    const scrollTop = editor.session.getScrollTop();
    this.binding = new AceBinding(ytext, editor, awareness);
    this.binding.hideCursor(this.model.permissions.lobby);
    editor.clearSelection();
    editor.moveCursorToPosition(cursor);
    editor.session.setScrollTop(scrollTop);
  }
}
