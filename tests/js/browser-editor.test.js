// The browser client end to end against a protocol stand-in (browser/mock-hub.js: the real socket.io
// server package, yjs and y-protocols, written to docs/PROTOCOL.md), so the client is tested on its
// own. The same scenarios run against the real server in browser-e2e.test.js.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { launch } from './browser/chromium.js';
import { buildFrontend } from './browser/frontend.js';
import { startMockDuet } from './browser/mock-hub.js';
import * as S from './browser/scenarios.js';

describe('browser client against the protocol stand-in', { timeout: 300000 }, () => {
  let mock;
  let browser;
  let ctx;

  before(async () => {
    mock = await startMockDuet(buildFrontend());
    browser = await launch();
  });

  after(async () => {
    await browser?.close();
    await mock?.close();
  });

  test('two people type at the same place at the same time; cursors with names', async () => {
    ctx = await S.collaborativeTyping(browser, mock.url);
    assert.equal(mock.text(ctx.code), await S.text(ctx.alice), 'the server has the same text');
  });

  test('late joiner sees code and language; language switch reaches everyone', async () => {
    await S.lateJoinerAndLanguage(browser, mock.url, ctx);
  });

  test('the status says "saving" until the server acknowledges, then "all changes saved"', async () => {
    const { alice } = ctx;
    mock.ctl.ackDelayMs = 1500;
    try {
      await S.focusEnd(alice);
      await alice.keyboard.type('// slow');
      await alice.waitForSelector('#status[data-state="saving"]');
      assert.match(await alice.textContent('#status .status-text'), /saving/);
      await alice.waitForSelector('#status[data-state="saved"]', { timeout: 10000 });
    } finally {
      mock.ctl.ackDelayMs = 0;
    }
  });

  test('refused acks keep edits unsaved and they are re-sent until the server takes them', async () => {
    const { alice, bob } = ctx;
    mock.ctl.failAcks = true;
    const committed = mock.ctl.committedUpdates;
    try {
      await S.focusEnd(alice);
      await alice.keyboard.type('!!');
      await alice.waitForSelector('#status[data-state="saving"]');
      await alice.waitForTimeout(1500);
      assert.equal(await alice.getAttribute('#status', 'data-state'), 'saving', 'not "saved" while the server refuses');
    } finally {
      mock.ctl.failAcks = false;
    }
    await alice.waitForSelector('#status[data-state="saved"]', { timeout: 20000 });
    assert.ok(mock.ctl.committedUpdates > committed);
    await S.waitText(bob, (t) => t.endsWith('!!'));
  });

  test('code runs in the browser and every participant sees the output', async () => {
    await S.runAndShare(ctx);
  });

  test('one user in two tabs runs code in both: each tab matches its own run by id, shows the other tab\'s', async () => {
    await S.sameUserTwoTabs(browser, mock.url);
  });

  test('server killed while typing: offline with unsaved edits, then reconnects and nothing is lost', async () => {
    await S.killAndRestart(mock, ctx);
  });

  test('keyboard: name required, Tab reaches the editor, Enter edits, Ctrl+Enter runs from anywhere', async () => {
    const s = mock.createSession('javascript', 'Keyboard');
    const page = await S.openPage(browser, `${mock.url}/interview/${s.code}`);
    await page.waitForSelector('#name-dialog[open]');
    await page.keyboard.press('Escape');
    await page.keyboard.press('Escape');
    await page.waitForTimeout(100);
    assert.equal(await page.evaluate(() => document.getElementById('name-dialog').open), true, 'still asking for a name');
    await page.keyboard.type('Kay');
    await page.keyboard.press('Enter');
    await S.waitSaved(page);
    // Tab order: … Run, Stop (disabled, skipped), then the editor (Ace's gutter, then its text area);
    // Enter starts editing.
    await page.focus('#run-btn');
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.getElementById('editor').contains(document.activeElement)), true);
    if (!(await page.evaluate(() => document.activeElement === window.duet.editor.renderer.scroller))) await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement === window.duet.editor.renderer.scroller), true);
    await page.keyboard.press('Enter');
    await page.keyboard.type('console.log("kbd")');
    assert.equal(await S.text(page), 'console.log("kbd")');
    await page.keyboard.press('Escape');
    await page.focus('#language');
    const before = await page.locator('#output .run-local').count();
    await page.keyboard.press('Control+Enter');
    await page.waitForFunction((n) => document.querySelectorAll('#output .run-local[data-status="ok"]').length > n, before);
    assert.match(await page.locator('#output .run-local').last().textContent(), /kbd/);
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });

  test('unknown interview codes get a clear message', async () => {
    await S.unknownCode(browser, mock.url);
  });

  test('screenshots, and no console errors', async () => {
    await S.screenshots(browser, mock.url, ctx, 'mock-');
    assert.deepEqual(ctx.alice.problems, []);
    assert.deepEqual(ctx.bob.problems, []);
  });
});
