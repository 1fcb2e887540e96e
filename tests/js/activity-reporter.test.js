// The editor page's activity reporting (frontend/src/activity-reporter.js) under plain Node: pastes
// from a stand-in Ace editor, and leaving / coming back to the page from a stand-in window and
// document whose focus and visibility the test sets. The browser test (browser-replay.test.js) runs
// the same code in Chromium against the real server.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { watchPastes, watchPresence } from '../../frontend/src/activity-reporter.js';

const wait = (ms) => new Promise((r) => setTimeout(r, ms));

class FakeEditor {
  constructor() {
    this.listeners = new Set();
    this.readOnly = false;
  }
  on(event, fn) {
    assert.equal(event, 'paste');
    this.listeners.add(fn);
  }
  off(event, fn) {
    this.listeners.delete(fn);
  }
  getReadOnly() {
    return this.readOnly;
  }
  paste(text) {
    for (const fn of this.listeners) fn({ text });
  }
}

function page() {
  const win = new EventTarget();
  const doc = new EventTarget();
  Object.assign(doc, { visibilityState: 'visible', focused: true, activeElement: { tagName: 'TEXTAREA' } });
  doc.hasFocus = () => doc.focused;
  return { win, doc };
}

describe('activity reporting', () => {
  test('pastes: their size in UTF-16 units and the document; nothing for an empty paste or a read-only editor; stops', () => {
    const editor = new FakeEditor();
    const got = [];
    const stop = watchPastes(editor, 'notes', (kind, fields) => got.push([kind, fields]));
    editor.paste('def f():\n    return 1\n');
    editor.paste('😀');
    editor.paste('');
    editor.readOnly = true;
    editor.paste('ignored');
    editor.readOnly = false;
    stop();
    editor.paste('after stop');
    assert.deepEqual(got, [
      ['paste', { size: 22, doc: 'notes' }],
      ['paste', { size: 2, doc: 'notes' }],
    ]);
  });

  test('leaving and coming back: debounced, each change once; a quick switch there and back is nothing', async () => {
    const { win, doc } = page();
    const got = [];
    const stop = watchPresence({ win, doc, report: (k) => got.push(k), debounceMs: 20 });
    // The tab hidden.
    doc.visibilityState = 'hidden';
    doc.dispatchEvent(new Event('visibilitychange'));
    win.dispatchEvent(new Event('blur')); // the same departure, told twice
    await wait(60);
    assert.deepEqual(got, ['blur']);
    doc.visibilityState = 'visible';
    doc.dispatchEvent(new Event('visibilitychange'));
    win.dispatchEvent(new Event('focus'));
    await wait(60);
    assert.deepEqual(got, ['blur', 'focus']);
    // Another window for a moment: shorter than the debounce, not reported.
    doc.focused = false;
    win.dispatchEvent(new Event('blur'));
    await wait(5);
    doc.focused = true;
    win.dispatchEvent(new Event('focus'));
    await wait(60);
    assert.deepEqual(got, ['blur', 'focus']);
    // Another window for good.
    doc.focused = false;
    win.dispatchEvent(new Event('blur'));
    await wait(60);
    assert.deepEqual(got, ['blur', 'focus', 'blur']);
    doc.focused = true;
    win.dispatchEvent(new Event('focus'));
    await wait(60);
    // Focus moving into the page's own frame (the HTML preview) is not leaving.
    doc.focused = false;
    doc.activeElement = { tagName: 'IFRAME' };
    win.dispatchEvent(new Event('blur'));
    await wait(60);
    assert.deepEqual(got, ['blur', 'focus', 'blur', 'focus']);
    stop();
    doc.visibilityState = 'hidden';
    doc.dispatchEvent(new Event('visibilitychange'));
    await wait(60);
    assert.equal(got.length, 4, 'nothing after stop');
  });
});
