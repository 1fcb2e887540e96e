// The interviewers' private notes (#notes-panel): a Markdown editor (Ace, bound to the notes document's
// Y.Text `notes` by the same binding as the code, so the other interviewers' cursors show too), its own
// save indicator (#notes-status) and the label saying who sees them. The panel exists only while the
// model has notes open — on an interviewer's page, once the server said so; a candidate's page never
// creates it. Read-only until loaded, after the end, and while a refused edit is being reloaded.
import { AceBinding, safeColor } from '../ace-yjs.js';
import { createNotesEditor } from '../ace-setup.js';
import { $, el } from './dom.js';

const edits = (n) => `${n} unsaved edit${n === 1 ? '' : 's'}`;

function describe(st) {
  switch (st?.state) {
    case 'connecting':
      return ['Connecting…', 'Connecting to the interview.'];
    case 'syncing':
      return ['Loading…', 'Loading the latest notes.'];
    case 'saving':
      return ['Saving…', `${edits(st.unsaved)} waiting for the server to save them.`];
    case 'saved':
      return ['Saved', 'Every change to the notes is saved.'];
    case 'reconnecting':
      return ['Reconnecting…', 'The connection dropped; reconnecting. Nothing is waiting to be saved.'];
    case 'offline':
      return st.unsaved > 0
        ? [`Offline · ${edits(st.unsaved)}`, `Not connected. Your ${edits(st.unsaved)} will be sent when the connection is back.`]
        : ['Offline', 'Not connected; retrying.'];
    default:
      return ['Not available', 'The notes are not available on this page.'];
  }
}

export class NotesPanel {
  /**
   * @param {import('../session-model.js').SessionModel} model
   * @param {{doc: import('yjs').Doc, awareness: import('y-protocols/awareness').Awareness}} notes
   */
  constructor(model, { doc, awareness }) {
    this.model = model;
    this.doc = doc;
    this.ytext = doc.getText('notes');
    this.awareness = awareness;
    this._next = null; // {doc, awareness} waiting for the resync before it is bound
    this._off = [];

    this.status = el('span', { id: 'notes-status', class: 'notes-status', role: 'status', 'aria-live': 'polite' });
    this.cover = el('div', { id: 'notes-cover', class: 'editor-cover', role: 'status' }, 'Loading the notes…');
    this.endedLine = el('p', { id: 'notes-ended', class: 'notes-ended', hidden: true }, 'The interview has ended: the notes are read-only.');
    const host = el('div', { id: 'notes-editor', class: 'notes-editor' });
    this.section = el(
      'section',
      { id: 'notes-panel', class: 'panel notes-panel', 'aria-labelledby': 'notes-title' },
      el(
        'div',
        { class: 'panel-header notes-header' },
        el('h2', { id: 'notes-title' }, 'Private notes ', el('span', { class: 'private-tag' }, 'private')),
        this.status,
      ),
      el('p', { id: 'notes-private', class: 'hint notes-hint' }, 'Only interviewers see these notes. The candidate never receives them.'),
      this.endedLine,
      el('div', { class: 'notes-body' }, host, this.cover),
    );
    const pane = document.querySelector('.side-pane');
    const after = $('controls-panel');
    if (after?.parentElement === pane) after.after(this.section);
    else pane.prepend(this.section);
    pane.classList.add('has-notes');

    this._setUser();
    this.editor = createNotesEditor(host, {
      placeholder: 'Notes in Markdown: what to ask, how it went. Only interviewers see them.',
      label: 'Private notes (only interviewers see them)',
    });
    this.editor.setReadOnly(true);
    this.binding = new AceBinding(this.ytext, this.editor, awareness);

    const on = (event, fn) => this._off.push(model.on(event, fn));
    on('self', () => this._setUser());
    on('notes-status', (st) => this._renderStatus(st));
    on('notes-synced', () => {
      this.cover.hidden = true;
      this._apply();
    });
    on('notes-permissions', () => this._apply());
    on('notes-edit-refused', ({ doc: next, awareness: nextAwareness }) => this._replaceDoc(next, nextAwareness));
    on('notes-resynced', () => this._bindNext());
    this._renderStatus(model.notesStatus);
    this._apply();
  }

  _setUser() {
    const self = this.model.self;
    this.awareness.setLocalStateField('user', { name: self.name, color: safeColor(self.color, this.awareness.clientID) });
  }

  _renderStatus(st) {
    const [label, detail] = describe(st);
    this.status.dataset.state = st?.state ?? 'error';
    this.status.dataset.unsaved = String(st?.unsaved ?? 0);
    this.status.title = detail;
    this.status.textContent = label;
  }

  _apply() {
    const p = this.model.notesPermissions;
    this.editor.setReadOnly(!p.editable);
    this.section.dataset.readonly = p.editable ? 'false' : 'true';
    this.endedLine.hidden = p.editReason !== 'ended';
  }

  /** After a refused edit: the old binding goes now (the text stays, read-only); the new one on resync. */
  _replaceDoc(doc, awareness) {
    this.binding.destroy();
    this.editor.setReadOnly(true);
    // The new awareness goes out with the new document's handshake: with this user's name already.
    this.awareness = awareness;
    this._setUser();
    this._next = { doc, awareness };
  }

  _bindNext() {
    if (!this._next) return;
    const { doc, awareness } = this._next;
    this._next = null;
    this.doc = doc;
    this.ytext = doc.getText('notes');
    const editor = this.editor;
    const cursor = editor.getCursorPosition();
    const scrollTop = editor.session.getScrollTop();
    this.binding = new AceBinding(this.ytext, editor, awareness);
    editor.clearSelection();
    editor.moveCursorToPosition(cursor);
    editor.session.setScrollTop(scrollTop);
    this._apply();
  }

  destroy() {
    for (const off of this._off) off();
    this.binding.destroy();
    this.editor.destroy();
    this.section.closest('.side-pane')?.classList.remove('has-notes');
    this.section.remove();
  }
}

/** The notes panel follows the model: created when the notes open, removed if they close. */
export function mountNotesPanel(model) {
  const view = { panel: null };
  model.on('notes-open', (notes) => {
    view.panel?.destroy();
    view.panel = new NotesPanel(model, notes);
  });
  model.on('notes-close', () => {
    view.panel?.destroy();
    view.panel = null;
  });
  return view;
}
