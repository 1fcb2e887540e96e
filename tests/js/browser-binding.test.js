// Duet's Ace–Yjs binding in real Chromium, without a server: two editors bound to two Y.Docs that
// exchange updates through an in-page "network" (held to make edits concurrent, then flushed).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { openHarness, setupPeers } from './browser/harness-page.js';
import { screenshot } from './browser/chromium.js';

describe('Ace–Yjs binding (in-page, two peers)', { timeout: 120000 }, () => {
  let h;
  let page;

  before(async () => {
    h = await openHarness();
    page = h.page;
  });

  after(async () => {
    await h?.close();
  });

  const state = () =>
    page.evaluate(() => ({
      a: T.a.text.toString(),
      b: T.b.text.toString(),
      aceA: T.a.editor.getValue(),
      aceB: T.b.editor.getValue(),
    }));

  /** Focuses peer's editor and puts the cursor at (row, column). */
  const focusAt = (peer, row, column) =>
    page.evaluate(
      ([p, r, c]) => {
        T[p].editor.focus();
        T[p].editor.navigateTo(r, c);
      },
      [peer, row, column],
    );

  const reset = async (text) => {
    await page.evaluate(() => {
      for (const p of window.T ? [window.T.a, window.T.b] : []) {
        p.binding.destroy();
        p.editor.destroy();
      }
      document.getElementById('ed1').replaceWith(Object.assign(document.createElement('div'), { id: 'ed1' }));
      document.getElementById('ed2').replaceWith(Object.assign(document.createElement('div'), { id: 'ed2' }));
    });
    await setupPeers(page);
    if (text) await page.evaluate((t) => T.a.text.insert(0, t), text);
  };

  test('concurrent typing at the same place converges and keeps everyone’s characters', async () => {
    await reset('hello\n');
    let s = await state();
    assert.equal(s.aceB, 'hello\n');
    await page.evaluate(() => T.hold());
    await focusAt('a', 0, 5);
    await page.keyboard.type(' from Alice');
    await focusAt('b', 0, 5);
    await page.keyboard.type(' from Bob');
    s = await state();
    assert.equal(s.a, 'hello from Alice\n');
    assert.equal(s.b, 'hello from Bob\n');
    await page.evaluate(() => T.flush());
    s = await state();
    assert.equal(s.a, s.b, 'both documents converge');
    assert.equal(s.aceA, s.a, 'Ace A shows the shared text');
    assert.equal(s.aceB, s.b, 'Ace B shows the shared text');
    assert.ok(s.a.includes(' from Alice') && s.a.includes(' from Bob'), `nobody's keystrokes lost: ${JSON.stringify(s.a)}`);
    assert.equal(s.a.length, 'hello\n'.length + ' from Alice'.length + ' from Bob'.length);
  });

  test('concurrent edits across lines, deletions and newlines converge', async () => {
    await reset('function f() {\n  return 1;\n}\n');
    await page.evaluate(() => T.hold());
    await focusAt('a', 1, 11);
    await page.keyboard.press('Backspace');
    await page.keyboard.press('Backspace');
    await page.keyboard.type('2;\n// alice'); // Ace auto-indents the new line
    await focusAt('b', 0, 0);
    await page.keyboard.type('// bob\n');
    await focusAt('b', 3, 0);
    await page.keyboard.press('Shift+End');
    await page.keyboard.type('} // end');
    await page.evaluate(() => T.flush());
    const s = await state();
    assert.equal(s.a, s.b);
    assert.equal(s.aceA, s.a);
    assert.equal(s.aceB, s.b);
    assert.equal(s.a, '// bob\nfunction f() {\n  return 2;\n  // alice\n} // end\n');
  });

  test('a remote insert before the local cursor shifts it; one after leaves it alone', async () => {
    await reset('line one\nline two\nline three\n');
    await focusAt('a', 1, 5); // "line |two"
    await page.evaluate(() => T.a.editor.selection.selectTo(1, 8)); // select "two"
    await focusAt('b', 1, 0);
    await page.keyboard.type('>> ');
    let sel = await page.evaluate(() => T.a.editor.getSelectionRange());
    assert.deepEqual(sel, { start: { row: 1, column: 8 }, end: { row: 1, column: 11 } }, 'selection moved right by 3');
    assert.equal(await page.evaluate(() => T.a.editor.getSelectedText()), 'two');
    await focusAt('b', 0, 0);
    await page.keyboard.type('first\n');
    sel = await page.evaluate(() => T.a.editor.getSelectionRange());
    assert.deepEqual(sel, { start: { row: 2, column: 8 }, end: { row: 2, column: 11 } }, 'selection moved down a line');
    await focusAt('b', 3, 10);
    await page.keyboard.type(' and more');
    sel = await page.evaluate(() => T.a.editor.getSelectionRange());
    assert.deepEqual(sel, { start: { row: 2, column: 8 }, end: { row: 2, column: 11 } }, 'an edit after the selection does not move it');
    assert.equal(await page.evaluate(() => T.a.editor.getSelectedText()), 'two');
  });

  test('the viewport stays on the same line when someone inserts lines above it', async () => {
    const lines = Array.from({ length: 300 }, (_, i) => `line ${i}`).join('\n');
    await reset(lines);
    const before = await page.evaluate(async () => {
      const ed = T.a.editor;
      ed.focus();
      ed.navigateTo(150, 2);
      ed.scrollToLine(140, false, false);
      await new Promise((r) => setTimeout(r, 50));
      return { top: ed.renderer.getFirstFullyVisibleRow(), scroll: ed.session.getScrollTop() };
    });
    assert.ok(before.top >= 139 && before.top <= 141, `scrolled to ~140, got ${before.top}`);
    await page.evaluate(() => {
      T.b.editor.focus();
      T.b.editor.navigateTo(0, 0);
      T.b.editor.insert('a\nb\nc\nd\ne\n');
    });
    const afterState = await page.evaluate(async () => {
      await new Promise((r) => setTimeout(r, 50));
      const ed = T.a.editor;
      return { top: ed.renderer.getFirstFullyVisibleRow(), cursor: ed.getCursorPosition(), line: ed.session.getLine(ed.renderer.getFirstFullyVisibleRow()) };
    });
    assert.equal(afterState.top, before.top + 5, 'the first visible row moved with its content');
    assert.equal(afterState.line, `line ${before.top}`);
    assert.deepEqual(afterState.cursor, { row: 155, column: 2 });
  });

  test('undo reverts only my own edits; redo brings them back', async () => {
    await reset('');
    await focusAt('a', 0, 0);
    await page.keyboard.type('alice();');
    await page.waitForTimeout(400); // beyond the capture timeout: a separate undo step
    await focusAt('b', 0, 8);
    await page.keyboard.type(' bob();');
    let s = await state();
    assert.equal(s.a, 'alice(); bob();');
    await focusAt('a', 0, 0);
    await page.keyboard.press('Control+z');
    s = await state();
    assert.equal(s.a, ' bob();', 'Alice’s undo removed only her text');
    assert.equal(s.b, ' bob();');
    assert.equal(s.aceA, s.a);
    await page.keyboard.press('Control+z');
    assert.equal((await state()).a, ' bob();', 'nothing more of Alice’s to undo; Bob’s text stays');
    await page.keyboard.press('Control+Shift+z');
    s = await state();
    assert.equal(s.a, 'alice(); bob();', 'redo');
    assert.equal(s.b, s.a);
    await focusAt('b', 0, 15);
    await page.keyboard.press('Control+z');
    s = await state();
    assert.equal(s.a, 'alice();', 'Bob’s undo removed only his text');
    assert.equal(s.aceB, 'alice();');
  });

  test('remote cursors and selections are drawn in the participant’s colour with their name', async () => {
    await reset('const answer = 42;\nconsole.log(answer);\n');
    await focusAt('b', 1, 8);
    await page.evaluate(() => T.b.editor.selection.selectTo(1, 11));
    await focusAt('a', 0, 6);
    await page.waitForTimeout(100);
    const seenByA = await page.evaluate(() => T.a.binding.remoteCursors());
    assert.equal(seenByA.length, 1);
    assert.equal(seenByA[0].name, 'Bob');
    assert.equal(seenByA[0].color, '#0090ff');
    assert.deepEqual([seenByA[0].row, seenByA[0].column], [1, 11]);
    const dom = await page.evaluate(() => {
      const el = document.querySelector('#ed1 .duet-remote-cursor');
      const label = el?.querySelector('.duet-remote-cursor-label');
      return {
        label: label?.textContent,
        color: el && getComputedStyle(el).backgroundColor,
        visible: el && getComputedStyle(el).display !== 'none',
        selections: document.querySelectorAll('#ed1 .duet-remote-selection').length,
      };
    });
    assert.equal(dom.label, 'Bob');
    assert.equal(dom.color, 'rgb(0, 144, 255)');
    assert.ok(dom.visible);
    assert.ok(dom.selections >= 1, 'Bob’s selection is drawn in Alice’s editor');
    const seenByB = await page.evaluate(() => T.b.binding.remoteCursors());
    assert.deepEqual(
      seenByB.map((c) => [c.name, c.row, c.column]),
      [['Alice', 0, 6]],
    );
    // The remote cursor follows text inserted before it.
    await focusAt('a', 1, 0);
    await page.keyboard.type('/*x*/ ');
    await page.waitForTimeout(50);
    const moved = await page.evaluate(() => T.a.binding.remoteCursors()[0]);
    assert.deepEqual([moved.row, moved.column], [1, 17]);
    await screenshot(page, 'binding-two-editors');
    // Leaving removes the cursor.
    await page.evaluate(() => window.DuetHarness.awarenessProtocol.removeAwarenessStates(T.a.aw, [T.b.doc.clientID], 'net'));
    await page.waitForTimeout(50);
    assert.equal(await page.locator('#ed1 .duet-remote-cursor').count(), 0);
  });

  test('a still participant’s name label fades away so it does not cover the code; the caret’s flag shows it on hover', async () => {
    await reset('line one\nline two\nline three\n');
    await focusAt('b', 1, 4);
    await page.waitForTimeout(100);
    const label = () =>
      page.evaluate(() => {
        const el = document.querySelector('#ed1 .duet-remote-cursor');
        const l = el.querySelector('.duet-remote-cursor-label');
        return {
          idle: el.classList.contains('duet-rc-idle'),
          opacity: getComputedStyle(l).opacity,
          shown: T.a.binding.remoteCursors()[0].labelShown,
          caret: getComputedStyle(el).display !== 'none',
          text: l.textContent,
        };
      });
    let l = await label();
    assert.deepEqual([l.idle, l.shown, l.opacity, l.text], [false, true, '1', 'Bob'], 'shown while Bob moves');
    const labelMs = await page.evaluate(() => window.DuetHarness.LABEL_MS);
    await page.waitForTimeout(labelMs + 600); // and the fade
    l = await label();
    assert.deepEqual([l.idle, l.shown, l.opacity, l.caret], [true, false, '0', true], 'faded; the caret stays');
    // Alice typing before Bob's caret moves it, but Bob did nothing: his label stays away.
    await focusAt('a', 0, 0);
    await page.keyboard.type('xx');
    await page.waitForTimeout(150);
    l = await label();
    assert.equal(l.idle, true);
    assert.equal(l.opacity, '0');
    // Hovering the caret's flag shows the name.
    const flag = await page.locator('#ed1 .duet-remote-cursor-flag').boundingBox();
    await page.mouse.move(flag.x + flag.width / 2, flag.y + flag.height / 2);
    await page.waitForTimeout(250);
    assert.equal((await label()).opacity, '1', 'shown on hover');
    await page.mouse.move(5, 5);
    await page.waitForTimeout(600);
    assert.equal((await label()).opacity, '0');
    // Bob moves: shown again.
    await focusAt('b', 2, 2);
    await page.waitForTimeout(600);
    l = await label();
    assert.deepEqual([l.idle, l.shown, l.opacity], [false, true, '1']);
  });

  test('carriage returns from elsewhere are normalised without breaking either editor', async () => {
    await reset('ab\n');
    await page.evaluate(() => T.b.text.insert(1, 'x\r\ny'));
    await page.waitForTimeout(50);
    const s = await state();
    assert.equal(s.a, 'ax\nyb\n');
    assert.equal(s.b, s.a);
    assert.equal(s.aceA, s.a);
    assert.equal(s.aceB, s.a);
  });

  test('no console errors', () => {
    assert.deepEqual(page.problems, []);
  });
});
