// Duet's Ace ⇄ Yjs binding.
//
// Keeps an Ace editor and a shared Y.Text equal, both ways:
// - Local Ace deltas (row/column) become UTF-16 index operations on the Y.Text, in a transaction whose
//   origin is the binding itself (so the Y.UndoManager tracks exactly them, and nothing else).
// - Remote Y.Text deltas are applied to the Ace document without going through Ace's commands:
//   Ace's anchors transform the local cursor and selection through each insert/delete (an insert before
//   the cursor shifts it, one after leaves it alone), and the first visible line is anchored too, so the
//   viewport does not jump when someone edits above it.
// - Remote cursors and selections come from awareness (`{user: {name, color}, cursor: {anchor, head}}`,
//   anchor/head being Y.RelativePosition JSON) and are drawn as Ace markers (selections) and an overlay
//   layer (carets with a name label) in each participant's colour. A label shows while its participant
//   moves or types and fades out after `labelMs` of stillness, so it does not sit on the code; the
//   caret keeps a small flag, and hovering the flag shows the name again.
// - Undo/redo go through a Y.UndoManager whose trackedOrigins is this binding: Ctrl/Cmd-Z never undoes
//   what someone else typed. The selection from before an undone change is restored.
//
// Ace and Yjs both count in UTF-16 code units, so Ace's positionToIndex/indexToPosition map directly,
// provided Ace's newline is one character: the document is kept in "unix" mode. A "\r" that reaches the
// shared text from elsewhere (a seed client on Windows) is removed by a normalising transaction.
import ace from 'ace-builds/src-noconflict/ace';
import * as Y from 'yjs';

const { Range } = ace.require('ace/range');

/** Origin of the transaction that removes "\r" characters from the shared text. */
export const NORMALIZE_ORIGIN = 'duet:normalize-newlines';

const FALLBACK_COLORS = ['#e5484d', '#0090ff', '#30a46c', '#f76b15', '#8e4ec6', '#d6409f', '#12a594', '#ca9b00'];
const COLOR_RE = /^#(?:[0-9a-f]{3}|[0-9a-f]{4}|[0-9a-f]{6}|[0-9a-f]{8})$/i;
const FUNC_COLOR_RE = /^(?:rgb|rgba|hsl|hsla)\([0-9.,%\s/]+\)$/i;

/** A colour that is safe to put into CSS; anything else gets a stable fallback for that client. */
export function safeColor(color, clientID = 0) {
  if (typeof color === 'string' && (COLOR_RE.test(color) || FUNC_COLOR_RE.test(color))) return color;
  return FALLBACK_COLORS[Math.abs(Number(clientID) || 0) % FALLBACK_COLORS.length];
}

let bindingCounter = 0;

/** How long a remote caret's name label stays after that participant last moved or typed. */
export const LABEL_MS = 2000;

export class AceBinding {
  /**
   * @param {Y.Text} ytext the shared text (Duet names it "code" in the Y.Doc)
   * @param {import('ace-builds').Ace.Editor} editor
   * @param {import('y-protocols/awareness').Awareness | null} awareness
   * @param {{undoManager?: Y.UndoManager, captureTimeout?: number, labelMs?: number}} [opts]
   */
  constructor(ytext, editor, awareness = null, opts = {}) {
    this.ytext = ytext;
    this.ydoc = ytext.doc;
    this.editor = editor;
    this.session = editor.getSession();
    this.aceDoc = this.session.getDocument();
    this.awareness = awareness;
    this.id = ++bindingCounter;
    this._mute = 0;
    this._destroyed = false;
    this._markerIds = [];
    this._remoteCursors = [];
    this._renderScheduled = false;
    this._cursorScheduled = false;
    this._cursorHidden = false;
    this._normalizeScheduled = false;
    this._beforeSelection = null;
    this._commandSelection = null;
    this._colorRules = '';
    this._labelMs = opts.labelMs ?? LABEL_MS;
    /** clientID → {key, until}: the caret's last position (and name), and until when its label shows. */
    this._labels = new Map();
    this._idleTimer = null;

    this.aceDoc.setNewLineMode('unix');
    // Ace's own history would undo remote edits too: Y.UndoManager replaces it.
    this.session.setUndoManager(null);
    this._withMute(() => this.aceDoc.setValue(this._targetText()));
    this._maybeNormalize();

    if (opts.undoManager) {
      this.undoManager = opts.undoManager;
      this.undoManager.addTrackedOrigin(this);
      this._ownsUndoManager = false;
    } else {
      this.undoManager = new Y.UndoManager(ytext, {
        trackedOrigins: new Set([this]),
        captureTimeout: opts.captureTimeout ?? 500,
      });
      this._ownsUndoManager = true;
    }

    this._onAceChange = this._onAceChange.bind(this);
    this._onYText = this._onYText.bind(this);
    this._onBeforeTransaction = this._onBeforeTransaction.bind(this);
    this._onStackItemAdded = this._onStackItemAdded.bind(this);
    this._onStackItemPopped = this._onStackItemPopped.bind(this);
    this._onSelection = this._onSelection.bind(this);
    this._onAwarenessChange = this._onAwarenessChange.bind(this);
    this._drawCursors = this._drawCursors.bind(this);
    this._onCommandExec = this._onCommandExec.bind(this);
    this._onCommandAfterExec = this._onCommandAfterExec.bind(this);

    this.aceDoc.on('change', this._onAceChange);
    ytext.observe(this._onYText);
    this.ydoc.on('beforeTransaction', this._onBeforeTransaction);
    this.undoManager.on('stack-item-added', this._onStackItemAdded);
    this.undoManager.on('stack-item-popped', this._onStackItemPopped);

    editor.commands.on('exec', this._onCommandExec);
    editor.commands.on('afterExec', this._onCommandAfterExec);
    this._previousCommands = ['undo', 'redo'].map((n) => editor.commands.byName[n]).filter(Boolean);
    editor.commands.addCommand({
      name: 'undo',
      description: 'Undo (your own edits only)',
      bindKey: { win: 'Ctrl-Z', mac: 'Command-Z' },
      exec: () => this.undo(),
    });
    editor.commands.addCommand({
      name: 'redo',
      description: 'Redo (your own edits only)',
      bindKey: { win: 'Ctrl-Shift-Z|Ctrl-Y', mac: 'Command-Shift-Z|Command-Y' },
      exec: () => this.redo(),
    });

    // Remote carets and labels live in a layer of their own above Ace's text.
    this._style = document.createElement('style');
    this._style.dataset.duetBinding = String(this.id);
    document.head.appendChild(this._style);
    this._overlay = document.createElement('div');
    this._overlay.className = 'ace_layer duet-remote-cursors';
    this._overlay.setAttribute('aria-hidden', 'true');
    editor.renderer.content.appendChild(this._overlay);
    editor.renderer.on('afterRender', this._drawCursors);

    editor.selection.on('changeCursor', this._onSelection);
    editor.selection.on('changeSelection', this._onSelection);
    editor.on('focus', this._onSelection);
    if (awareness) {
      awareness.on('change', this._onAwarenessChange);
      this._publishCursor();
      this._scheduleRender();
    }
  }

  // ---- local → shared ---------------------------------------------------------------------------

  _onAceChange(delta) {
    if (this._mute > 0) return;
    // 'change' fires after Ace applied the delta: delta.start is valid in the new document in both
    // cases (text before it did not change), so its index is the index of the operation.
    const index = this.aceDoc.positionToIndex(delta.start, 0);
    const text = delta.lines.join('\n');
    if (!text) return;
    this.ydoc.transact(() => {
      if (delta.action === 'insert') this.ytext.insert(index, text);
      else if (delta.action === 'remove') this.ytext.delete(index, text.length);
    }, this);
  }

  // ---- shared → local ---------------------------------------------------------------------------

  _onYText(event, transaction) {
    if (transaction.origin === this) {
      this._scheduleRender();
      return;
    }
    const hasCR = event.delta.some((op) => typeof op.insert === 'string' && op.insert.includes('\r'));
    const resync = hasCR || transaction.origin === NORMALIZE_ORIGIN;
    let lastIndex = null;
    this._preserveScroll(() =>
      this._withMute(() => {
        if (resync) this._resyncFromY();
        else lastIndex = this._applyDelta(event.delta);
        // Should never trigger; if Ace and the Y.Text ever disagree, Y.Text wins.
        if (this.aceDoc.getValue().length !== this._targetLength()) this._resyncFromY();
      }),
    );
    if (transaction.origin === this.undoManager && lastIndex !== null) this._lastUndoIndex = lastIndex;
    this._maybeNormalize();
    this._scheduleRender();
  }

  /** Applies a Y.Text delta to the Ace document; returns the index where the last operation ended. */
  _applyDelta(delta) {
    let index = 0;
    let last = null;
    for (const op of delta) {
      if (op.retain != null) {
        index += op.retain;
      } else if (op.insert != null) {
        const text = typeof op.insert === 'string' ? op.insert : '';
        if (text) {
          this.aceDoc.insert(this.aceDoc.indexToPosition(index, 0), text);
          index += text.length;
          last = index;
        }
      } else if (op.delete != null) {
        const start = this.aceDoc.indexToPosition(index, 0);
        const end = this.aceDoc.indexToPosition(index + op.delete, 0);
        this.aceDoc.remove(Range.fromPoints(start, end));
        last = index;
      }
    }
    return last;
  }

  _targetText() {
    return this.ytext.toString().replace(/\r/g, '');
  }

  _targetLength() {
    const s = this.ytext.toString();
    let n = s.length;
    for (let i = s.indexOf('\r'); i !== -1; i = s.indexOf('\r', i + 1)) n--;
    return n;
  }

  /** Makes Ace equal to the Y.Text with one minimal replace (common prefix and suffix kept). */
  _resyncFromY() {
    const target = this._targetText();
    const current = this.aceDoc.getValue();
    if (current === target) return;
    let start = 0;
    const max = Math.min(current.length, target.length);
    while (start < max && current.charCodeAt(start) === target.charCodeAt(start)) start++;
    let endCur = current.length;
    let endTgt = target.length;
    while (endCur > start && endTgt > start && current.charCodeAt(endCur - 1) === target.charCodeAt(endTgt - 1)) {
      endCur--;
      endTgt--;
    }
    const from = this.aceDoc.indexToPosition(start, 0);
    if (endCur > start) this.aceDoc.remove(Range.fromPoints(from, this.aceDoc.indexToPosition(endCur, 0)));
    if (endTgt > start) this.aceDoc.insert(from, target.slice(start, endTgt));
  }

  /** Removes "\r" from the shared text (every client may do it concurrently: deletes are idempotent). */
  _maybeNormalize() {
    if (this._normalizeScheduled || !this.ytext.toString().includes('\r')) return;
    this._normalizeScheduled = true;
    setTimeout(() => {
      this._normalizeScheduled = false;
      if (this._destroyed) return;
      const s = this.ytext.toString();
      if (!s.includes('\r')) return;
      this.ydoc.transact(() => {
        for (let i = s.length - 1; i >= 0; i--) if (s.charCodeAt(i) === 13) this.ytext.delete(i, 1);
      }, NORMALIZE_ORIGIN);
    }, 0);
  }

  _withMute(fn) {
    this._mute++;
    try {
      return fn();
    } finally {
      this._mute--;
    }
  }

  /** Keeps the first visible line where it is on screen while `fn` changes the document. */
  _preserveScroll(fn) {
    const renderer = this.editor.renderer;
    const lineHeight = renderer.lineHeight || renderer.layerConfig?.lineHeight || 0;
    const scrollTop = this.session.getScrollTop();
    if (!lineHeight || scrollTop <= 0) {
      fn();
      return;
    }
    const firstScreenRow = Math.floor(scrollTop / lineHeight);
    const docRow = this.session.screenToDocumentPosition(firstScreenRow, 0).row;
    const before = this.session.documentToScreenRow(docRow, 0);
    const anchor = this.aceDoc.createAnchor(docRow, 0);
    try {
      fn();
    } finally {
      const after = this.session.documentToScreenRow(anchor.row, 0);
      anchor.detach();
      if (after !== before) this.session.setScrollTop(Math.max(0, scrollTop + (after - before) * lineHeight));
    }
  }

  // ---- undo / redo ------------------------------------------------------------------------------

  undo() {
    this._lastUndoIndex = null;
    this.undoManager.undo();
  }

  redo() {
    this._lastUndoIndex = null;
    this.undoManager.redo();
  }

  _selectionAsRelative() {
    const sel = this.editor.selection;
    const a = this.aceDoc.positionToIndex(sel.getSelectionAnchor(), 0);
    const h = this.aceDoc.positionToIndex(sel.getSelectionLead(), 0);
    return {
      anchor: Y.createRelativePositionFromTypeIndex(this.ytext, a),
      head: Y.createRelativePositionFromTypeIndex(this.ytext, h),
    };
  }

  _onBeforeTransaction(tr) {
    if (tr.origin === this) this._beforeSelection = this._commandSelection ?? this._selectionAsRelative();
    else if (tr.origin === this.undoManager) this._beforeSelection = this._selectionAsRelative();
  }

  // Ace has already moved the selection when its 'change' event fires: the selection an undo should
  // bring back is the one from before the command (typing, delete, paste, …) that made the change.
  _onCommandExec() {
    this._commandSelection = this._selectionAsRelative();
  }

  _onCommandAfterExec() {
    this._commandSelection = null;
  }

  _onStackItemAdded({ stackItem }) {
    if (this._beforeSelection && !stackItem.meta.has(this)) stackItem.meta.set(this, this._beforeSelection);
  }

  _onStackItemPopped({ stackItem }) {
    const saved = stackItem.meta.get(this);
    const toPos = (rel) => {
      const abs = rel && Y.createAbsolutePositionFromRelativePosition(rel, this.ydoc);
      return abs && abs.type === this.ytext ? this.aceDoc.indexToPosition(abs.index, 0) : null;
    };
    let anchor = saved ? toPos(saved.anchor) : null;
    let head = saved ? toPos(saved.head) : null;
    if (!anchor || !head) {
      if (this._lastUndoIndex == null) return;
      anchor = head = this.aceDoc.indexToPosition(this._lastUndoIndex, 0);
    }
    this.editor.selection.setSelectionRange(Range.fromPoints(anchor, head), head.row < anchor.row || (head.row === anchor.row && head.column < anchor.column));
    this.editor.renderer.scrollCursorIntoView(null, 0.5);
  }

  // ---- awareness: the local cursor ----------------------------------------------------------------

  _onSelection() {
    if (!this.awareness || this._cursorScheduled) return;
    this._cursorScheduled = true;
    queueMicrotask(() => {
      this._cursorScheduled = false;
      if (!this._destroyed) this._publishCursor();
    });
  }

  /**
   * Hidden: this editor's cursor is not published (null in awareness) — an editor its user cannot see
   * (the candidate's lobby) has no place to show the others. Shown again: published at once.
   */
  hideCursor(hidden) {
    this._cursorHidden = !!hidden;
    if (!this.awareness || this.awareness.getLocalState() === null) return;
    if (this._cursorHidden) {
      if (this.awareness.getLocalState().cursor) this.awareness.setLocalStateField('cursor', null);
    } else {
      this._publishCursor();
    }
  }

  _publishCursor() {
    if (!this.awareness) return;
    const state = this.awareness.getLocalState();
    if (state === null || this._cursorHidden) return;
    const { anchor, head } = this._selectionAsRelative();
    const cur = state.cursor;
    if (cur && cur.anchor && cur.head) {
      try {
        if (
          Y.compareRelativePositions(Y.createRelativePositionFromJSON(cur.anchor), anchor) &&
          Y.compareRelativePositions(Y.createRelativePositionFromJSON(cur.head), head)
        ) {
          return;
        }
      } catch {
        /* malformed previous value: overwrite it */
      }
    }
    this.awareness.setLocalStateField('cursor', {
      anchor: Y.relativePositionToJSON(anchor),
      head: Y.relativePositionToJSON(head),
    });
  }

  // ---- awareness: remote cursors ------------------------------------------------------------------

  _onAwarenessChange() {
    this._scheduleRender();
  }

  _scheduleRender() {
    if (!this.awareness || this._renderScheduled) return;
    this._renderScheduled = true;
    queueMicrotask(() => {
      this._renderScheduled = false;
      if (!this._destroyed) this._renderRemote();
    });
  }

  /** Recomputes remote selections (Ace markers) and carets from awareness and the current text. */
  _renderRemote() {
    for (const id of this._markerIds) this.session.removeMarker(id);
    this._markerIds = [];
    const cursors = [];
    const rules = [];
    for (const [clientID, state] of this.awareness.getStates()) {
      if (clientID === this.ydoc.clientID || !state || !state.cursor) continue;
      const color = safeColor(state.user?.color, clientID);
      const name = typeof state.user?.name === 'string' && state.user.name.trim() ? state.user.name : 'Anonymous';
      let anchor;
      let head;
      try {
        anchor = Y.createAbsolutePositionFromRelativePosition(Y.createRelativePositionFromJSON(state.cursor.anchor), this.ydoc);
        head = Y.createAbsolutePositionFromRelativePosition(Y.createRelativePositionFromJSON(state.cursor.head), this.ydoc);
      } catch {
        continue; // malformed awareness from a peer: ignore it
      }
      if (!anchor || !head || anchor.type !== this.ytext || head.type !== this.ytext) continue;
      const headPos = this.aceDoc.indexToPosition(head.index, 0);
      const cls = `duet-rc-${clientID >>> 0}`;
      rules.push(`.${cls}{--duet-rc:${color}}`);
      if (anchor.index !== head.index) {
        const from = this.aceDoc.indexToPosition(Math.min(anchor.index, head.index), 0);
        const to = this.aceDoc.indexToPosition(Math.max(anchor.index, head.index), 0);
        this._markerIds.push(this.session.addMarker(Range.fromPoints(from, to), `duet-remote-selection ${cls}`, 'text', false));
      }
      cursors.push({ clientID, name, color, cls, pos: headPos });
      // Its own relative position changes when that participant moves or types, not when others'
      // edits shift it.
      const key = `${JSON.stringify(state.cursor)}:${name}`;
      const seen = this._labels.get(clientID);
      if (!seen || seen.key !== key) this._labels.set(clientID, { key, until: Date.now() + this._labelMs });
    }
    for (const id of this._labels.keys()) if (!cursors.some((c) => c.clientID === id)) this._labels.delete(id);
    const css = rules.join('\n');
    if (css !== this._colorRules) {
      this._colorRules = css;
      this._style.textContent = css;
    }
    this._remoteCursors = cursors;
    this._drawCursors();
  }

  /** Positions the remote carets and their labels (called after every Ace render). */
  _drawCursors() {
    const overlay = this._overlay;
    const renderer = this.editor.renderer;
    const config = renderer.layerConfig;
    const cursorLayer = renderer.$cursorLayer;
    while (overlay.childElementCount > this._remoteCursors.length) overlay.lastElementChild.remove();
    const now = Date.now();
    let nextIdle = Infinity;
    this._remoteCursors.forEach((c, i) => {
      let el = overlay.children[i];
      if (!el) {
        el = document.createElement('div');
        el.className = 'duet-remote-cursor';
        const label = document.createElement('div');
        label.className = 'duet-remote-cursor-label';
        el.appendChild(label);
        const flag = document.createElement('div');
        flag.className = 'duet-remote-cursor-flag';
        el.appendChild(flag);
        overlay.appendChild(el);
      }
      const until = this._labels.get(c.clientID)?.until ?? 0;
      const idle = now >= until;
      if (!idle) nextIdle = Math.min(nextIdle, until);
      el.className = `duet-remote-cursor ${c.cls}${idle ? ' duet-rc-idle' : ''}`;
      el.dataset.clientId = String(c.clientID);
      const label = el.firstElementChild;
      if (label.textContent !== c.name) label.textContent = c.name;
      let px;
      if (cursorLayer && typeof cursorLayer.getPixelPosition === 'function' && cursorLayer.config) {
        px = cursorLayer.getPixelPosition(c.pos, true);
      } else {
        const screen = this.session.documentToScreenPosition(c.pos);
        px = {
          left: (renderer.$padding || 0) + screen.column * (config.characterWidth || 7),
          top: (screen.row - (config.firstRowScreen || 0)) * (config.lineHeight || 16),
        };
      }
      const visible = px.top >= -config.lineHeight && px.top < (config.height || renderer.$size?.scrollerHeight || 1e6);
      el.style.display = visible ? '' : 'none';
      el.style.transform = `translate(${Math.round(px.left)}px, ${Math.round(px.top)}px)`;
      el.style.height = `${config.lineHeight}px`;
      el.classList.toggle('duet-label-below', px.top < config.lineHeight);
    });
    // Fade the next label out when its time is up.
    clearTimeout(this._idleTimer);
    this._idleTimer = Number.isFinite(nextIdle) ? setTimeout(() => !this._destroyed && this._drawCursors(), nextIdle - now + 10) : null;
  }

  /** The remote carets currently drawn: [{clientID, name, color, row, column}] (for tests and the UI). */
  remoteCursors() {
    const now = Date.now();
    return this._remoteCursors.map((c) => ({
      clientID: c.clientID,
      name: c.name,
      color: c.color,
      row: c.pos.row,
      column: c.pos.column,
      labelShown: now < (this._labels.get(c.clientID)?.until ?? 0),
    }));
  }

  destroy() {
    if (this._destroyed) return;
    this._destroyed = true;
    this.aceDoc.off('change', this._onAceChange);
    this.ytext.unobserve(this._onYText);
    this.ydoc.off('beforeTransaction', this._onBeforeTransaction);
    this.undoManager.off('stack-item-added', this._onStackItemAdded);
    this.undoManager.off('stack-item-popped', this._onStackItemPopped);
    if (this._ownsUndoManager) this.undoManager.destroy();
    else this.undoManager.removeTrackedOrigin(this);
    this.editor.commands.off('exec', this._onCommandExec);
    this.editor.commands.off('afterExec', this._onCommandAfterExec);
    for (const cmd of this._previousCommands) this.editor.commands.addCommand(cmd);
    this.editor.renderer.off('afterRender', this._drawCursors);
    clearTimeout(this._idleTimer);
    this.editor.selection.off('changeCursor', this._onSelection);
    this.editor.selection.off('changeSelection', this._onSelection);
    this.editor.off('focus', this._onSelection);
    for (const id of this._markerIds) this.session.removeMarker(id);
    this._overlay.remove();
    this._style.remove();
    if (this.awareness) {
      this.awareness.off('change', this._onAwarenessChange);
      if (this.awareness.getLocalState() !== null) this.awareness.setLocalStateField('cursor', null);
    }
  }
}
