// Issue 5's browser tests against the real all-in-one server (target/debug/duet, built with
// `cargo build -p duet` when missing): real headless Chromium (Debian's /usr/bin/chromium) driven by
// playwright-core, a throw-away SQLite database, the freshly built frontend/dist.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { launch } from './browser/chromium.js';
import { buildFrontend } from './browser/frontend.js';
import { DuetServer } from './browser/duet-server.js';
import * as S from './browser/scenarios.js';

describe('browser client against the real duet server', { timeout: 600000 }, () => {
  let server;
  let browser;
  let ctx;

  before(async () => {
    buildFrontend();
    server = await new DuetServer().start();
    browser = await launch();
  });

  after(async () => {
    await browser?.close();
    await server?.close();
  });

  test('two people type at the same place at the same time; same text, both sets of keystrokes, cursors with names', async () => {
    ctx = await S.collaborativeTyping(browser, server.url);
  });

  test('a late joiner sees the current code and language; a language switch reaches everyone', async () => {
    await S.lateJoinerAndLanguage(browser, server.url, ctx);
  });

  test("REST answers the seed's names: session_code, and code = the interview's current text", async () => {
    const want = await S.text(ctx.alice);
    assert.ok(want.length > 0, 'the scenarios above typed something');
    // The hub saves the plain-text copy within about a second of the last edit.
    let body;
    for (let i = 0; i < 50; i++) {
      body = await (await fetch(`${server.url}/api/session/${ctx.code.toLowerCase()}`)).json();
      if (body.code === want) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(body.session_code, ctx.code);
    assert.equal(body.code, want);
    assert.equal(body.text, undefined);
  });

  test('JavaScript, Python and HTML run in the browser; the other participant sees the output', async () => {
    await S.runAndShare(ctx);
  });

  test('one user in two tabs runs code in both: each tab matches its own run by id, shows the other tab\'s', async () => {
    await S.sameUserTwoTabs(browser, server.url);
  });

  test('server killed and restarted while one user keeps typing: offline/unsaved, then reconnects, nothing lost', async () => {
    await S.killAndRestart(server, ctx);
  });

  test('unknown interview codes get a clear message', async () => {
    await S.unknownCode(browser, server.url);
  });

  test('screenshots of the landing page and of the editor with two participants; no console errors', async () => {
    await S.screenshots(browser, server.url, ctx, '');
    assert.deepEqual(ctx.alice.problems, []);
    assert.deepEqual(ctx.bob.problems, []);
  });
});
