// The browser scenarios of issue 5, written once and run against a backend: the real all-in-one
// server (browser-e2e.test.js) or the protocol stand-in (browser-editor.test.js).
// A backend is {url, stop(), start()} where stop() kills the server and start() brings it back on
// the same address and database.
import assert from 'node:assert/strict';
import { newPage, newTab, screenshot } from './chromium.js';

// Expected noise while a server is down: failed polls and WebSocket attempts.
export const NETWORK_NOISE = [/socket\.io/, /WebSocket connection/, /ERR_CONNECTION_REFUSED/, /ERR_EMPTY_RESPONSE/, /ERR_CONNECTION_RESET/];

export async function openPage(browser, url, opts = {}) {
  const page = await newPage(browser, opts);
  if (opts.name) {
    await page.addInitScript((n) => {
      if (!localStorage.getItem('duet.name')) localStorage.setItem('duet.name', n);
    }, opts.name);
  }
  if (url) await page.goto(url);
  return page;
}

/**
 * Creates an interview through the landing page and opens it with the interviewer link shown there;
 * returns its code (the page is then the editor, as the interviewer).
 */
export async function createInterview(page, base, { name, language = 'javascript', title = '' }) {
  await page.goto(`${base}/`);
  await page.fill('#create-name', name);
  await page.selectOption('#create-language', language);
  if (title) await page.fill('#create-title-input', title);
  await page.click('#create-submit');
  await page.waitForSelector('#created:not([hidden])');
  const code = (await page.textContent('#created-code')).trim();
  await page.click('#open-interview');
  await page.waitForURL(new RegExp(`/interview/${code}$`));
  return code;
}

export async function waitSaved(page, timeout = 20000) {
  await page.waitForSelector('#status[data-state="saved"]', { timeout });
  await page.waitForFunction(() => window.duet && !window.duet.editor.getReadOnly(), null, { timeout });
}

export const text = (page) => page.evaluate(() => window.duet.ytext.toString());

export async function waitText(page, predicate, timeout = 15000) {
  const deadline = Date.now() + timeout;
  let last;
  while (Date.now() < deadline) {
    last = await text(page);
    if (predicate(last)) return last;
    await page.waitForTimeout(100);
  }
  throw new Error(`timed out waiting for the text; last: ${JSON.stringify(last)}`);
}

/** Focuses the editor with the cursor at the end of the document. */
export async function focusEnd(page) {
  await page.evaluate(() => {
    window.duet.editor.focus();
    window.duet.editor.navigateFileEnd();
  });
}

/** Replaces the whole code (a local edit through Ace, shared like typing). */
export async function setCode(page, code) {
  await page.evaluate((c) => {
    window.duet.editor.setValue(c, 1);
    window.duet.editor.focus();
  }, code);
}

export async function setLanguage(page, language) {
  await page.selectOption('#language', language);
}

/** Runs the code with Ctrl+Enter and waits for this page's run entry to finish. */
export async function runCode(page, timeout = 90000) {
  const before = await page.locator('#output .run-local').count();
  await page.evaluate(() => window.duet.editor.focus());
  await page.keyboard.press('Control+Enter');
  const entry = page.locator('#output .run-local').nth(before);
  await entry.waitFor({ state: 'attached' });
  await page.waitForFunction((i) => {
    const el = document.querySelectorAll('#output .run-local')[i];
    return el && el.dataset.status !== 'running';
  }, before, { timeout });
  return { status: await entry.getAttribute('data-status'), output: await entry.locator('.run-output').textContent() };
}

/** Waits for a run by `who` (as labelled) on a page that did not run it. */
export async function waitRemoteRun(page, who, count, timeout = 20000) {
  const entries = page.locator('#output .run:not(.run-local)').filter({ has: page.locator('.run-who', { hasText: who }) });
  await page.waitForFunction(
    ([w, n]) => [...document.querySelectorAll('#output .run:not(.run-local) .run-who')].filter((e) => e.textContent === w).length >= n,
    [who, count],
    { timeout },
  );
  const e = entries.nth(count - 1);
  return { status: await e.getAttribute('data-status'), output: await e.locator('.run-output').textContent(), header: await e.locator('.run-header').textContent() };
}

// ---- scenarios ----------------------------------------------------------------------------------

/**
 * Alice creates an interview on the landing page (share dialog with link and code), Bob joins by code
 * (asked for his name), both type at the same place at the same time: same text, both people's
 * characters, each sees the other's cursor with the right name. Returns the open pages and the code.
 */
export async function collaborativeTyping(browser, base) {
  const alice = await openPage(browser, null, { ignore: NETWORK_NOISE });
  const code = await createInterview(alice, base, { name: 'Alice', language: 'javascript', title: 'Frontend round' });
  // The share dialog shows the candidate link and the code, and to the interviewer the private
  // interviewer link (whose token left the address bar).
  await alice.click('#share-btn');
  await alice.waitForSelector('#share-dialog[open]');
  assert.equal(await alice.inputValue('#share-link'), `${base}/interview/${code}`);
  assert.equal(await alice.inputValue('#share-code'), code);
  const linkToken = await alice.evaluate((c) => localStorage.getItem(`duet.link.${c}`), code);
  assert.ok(linkToken, 'the interviewer link token is kept');
  assert.equal(await alice.inputValue('#share-interviewer-link'), `${base}/interview/${code}#token=${encodeURIComponent(linkToken)}`);
  assert.equal(alice.url(), `${base}/interview/${code}`, 'no token in the address bar');
  await alice.click('#copy-code');
  await alice.waitForFunction(() => /copied|Ctrl\+C/.test(document.getElementById('copy-feedback').textContent));
  await alice.keyboard.press('Escape');
  await alice.waitForSelector('#share-dialog:not([open])', { state: 'attached' });
  await waitSaved(alice);
  assert.equal(await alice.textContent('#session-title'), 'Frontend round');

  // Bob joins by code from the landing page and is asked for his name.
  const bob = await openPage(browser, `${base}/`, { ignore: NETWORK_NOISE });
  await bob.fill('#join-code', code.toLowerCase());
  await bob.click('#join-submit');
  await bob.waitForURL(new RegExp(`/interview/${code}$`));
  await bob.waitForSelector('#name-dialog[open]');
  await bob.fill('#name-input', 'Bob');
  await bob.keyboard.press('Enter');
  await waitSaved(bob);
  assert.equal(await bob.evaluate(() => localStorage.getItem('duet.name')), 'Bob');
  assert.match(await bob.evaluate(() => localStorage.getItem('duet.user_id')), /^[0-9a-f-]{36}$/);
  // Roles from the participant tokens: Alice opened the interviewer link, Bob the code.
  assert.equal(await alice.evaluate(() => window.duet.model.role), 'interviewer');
  assert.equal(await bob.evaluate(() => window.duet.model.role), 'candidate');
  assert.ok(await bob.isHidden('#share-interviewer'), 'a candidate is never shown the interviewer link');

  // Presence: both listed on both sides, Alice is told Bob joined.
  for (const p of [alice, bob]) {
    await p.waitForFunction(() => document.querySelectorAll('#participants .participant').length === 2);
  }
  await alice.waitForFunction(() => /Bob joined/.test(document.getElementById('activity').textContent));

  // A shared starting point, then both type at its end at the same time.
  await focusEnd(alice);
  await alice.keyboard.type('let x = 1;\n');
  await waitText(bob, (t) => t === 'let x = 1;\n');
  await focusEnd(alice);
  await focusEnd(bob);
  await Promise.all([alice.keyboard.type('aaaaaaaaaa', { delay: 15 }), bob.keyboard.type('bbbbbbbbbb', { delay: 15 })]);
  const expectLen = 'let x = 1;\n'.length + 20;
  const a = await waitText(alice, (t) => t.length === expectLen);
  const b = await waitText(bob, (t) => t === a);
  assert.equal(a, b);
  assert.equal([...a].filter((c) => c === 'a').length, 10, a);
  assert.equal([...a].filter((c) => c === 'b').length, 10, a);
  assert.equal(await alice.evaluate(() => window.duet.editor.getValue()), a, 'Ace shows the shared text');

  // Each sees the other's cursor with the right name.
  await alice.waitForFunction(() => [...document.querySelectorAll('.duet-remote-cursor-label')].some((l) => l.textContent === 'Bob'));
  await bob.waitForFunction(() => [...document.querySelectorAll('.duet-remote-cursor-label')].some((l) => l.textContent === 'Alice'));
  await waitSaved(alice);
  await waitSaved(bob);
  return { alice, bob, code };
}

/** A language switch reaches everyone; a late joiner sees the current code and language. */
export async function lateJoinerAndLanguage(browser, base, { alice, bob, code }) {
  await setLanguage(alice, 'python');
  await bob.waitForFunction(() => document.getElementById('language').value === 'python');
  await bob.waitForFunction(() => /Alice switched the language to Python/.test(document.getElementById('activity').textContent));
  assert.equal(await bob.evaluate(() => window.duet.editor.session.getMode().$id), 'ace/mode/python');
  const current = await text(alice);
  const carol = await openPage(browser, `${base}/interview/${code}`, { name: 'Carol' });
  await waitSaved(carol);
  assert.equal(await text(carol), current);
  assert.equal(await carol.inputValue('#language'), 'python');
  await alice.waitForFunction(() => document.querySelectorAll('#participants .participant').length === 3);
  await carol.close();
  await alice.waitForFunction(() => /Carol left/.test(document.getElementById('activity').textContent));
  await setLanguage(alice, 'javascript');
  await bob.waitForFunction(() => document.getElementById('language').value === 'javascript');
}

/** Runs JavaScript, Python and HTML in Alice's browser; Bob sees every run's output, labelled. */
export async function runAndShare({ alice, bob }) {
  let seen = 0;
  // JavaScript: console output, then a thrown error.
  await setCode(alice, 'console.log("sum", [1, 2, 3].reduce((a, b) => a + b));\nconsole.log({ ok: true });');
  let r = await runCode(alice);
  assert.equal(r.status, 'ok');
  assert.match(r.output, /sum 6\n\{ ok: true \}/);
  let remote = await waitRemoteRun(bob, 'Alice', ++seen);
  assert.match(remote.output, /sum 6/);
  assert.match(remote.header, /Alice ran JavaScript/);

  await setCode(alice, 'console.log("before");\nnull.boom();');
  r = await runCode(alice);
  assert.equal(r.status, 'error');
  assert.match(r.output, /before\nTypeError: Cannot read properties of null/);
  remote = await waitRemoteRun(bob, 'Alice', ++seen);
  assert.equal(remote.status, 'error');
  assert.match(remote.output, /TypeError/);

  // Python: print, an exception, an infinite loop stopped by the time limit.
  await setLanguage(alice, 'python');
  await bob.waitForFunction(() => document.getElementById('language').value === 'python');
  await setCode(alice, 'print("hello", "from", "python")\nprint(sum(range(5)))');
  r = await runCode(alice, 120000);
  assert.equal(r.status, 'ok', r.output);
  assert.equal(r.output.trim(), 'hello from python\n10');
  remote = await waitRemoteRun(bob, 'Alice', ++seen);
  assert.match(remote.output, /hello from python/);
  assert.match(remote.header, /Alice ran Python/);

  await setCode(alice, 'def f(n):\n    return 10 / n\n\nf(0)');
  r = await runCode(alice);
  assert.equal(r.status, 'error');
  assert.match(r.output, /ZeroDivisionError/);
  assert.match(r.output, /File "main\.py", line 4/);
  remote = await waitRemoteRun(bob, 'Alice', ++seen);
  assert.match(remote.output, /ZeroDivisionError/);

  await setCode(alice, 'while True:\n    pass');
  r = await runCode(alice, 60000);
  assert.equal(r.status, 'timeout');
  assert.match(r.output, /time limit/);
  remote = await waitRemoteRun(bob, 'Alice', ++seen);
  assert.equal(remote.status, 'timeout');

  // HTML: rendered in the sandboxed iframe, unable to reach the parent page.
  await setLanguage(alice, 'html');
  await setCode(
    alice,
    '<h1 id="greeting">Hello, Duet</h1>\n<script>\ntry { parent.document.title; console.log("reached the parent"); }\ncatch (e) { console.log("parent blocked: " + e.name); }\n</script>',
  );
  r = await runCode(alice);
  assert.equal(r.status, 'ok');
  assert.match(r.output, /parent blocked: SecurityError/);
  assert.equal(await alice.getAttribute('#preview iframe', 'sandbox'), 'allow-scripts');
  const frame = alice.frames().find((f) => f.parentFrame() === alice.mainFrame());
  assert.equal(await frame.textContent('#greeting'), 'Hello, Duet');
  remote = await waitRemoteRun(bob, 'Alice', ++seen);
  assert.match(remote.output, /parent blocked: SecurityError/);
  assert.match(remote.header, /Alice ran HTML/);
  await setLanguage(alice, 'javascript');
}

/** The run entries on a page: `{local, who, output, resultId, notes}` each, oldest first. */
export const runEntries = (page) =>
  page.evaluate(() =>
    [...document.querySelectorAll('#output .run')].map((e) => ({
      local: e.classList.contains('run-local'),
      who: e.querySelector('.run-who').textContent,
      output: e.querySelector('.run-output').textContent,
      resultId: e.dataset.resultId ?? null,
      notes: [...e.querySelectorAll('.run-note')].map((n) => n.textContent),
    })),
  );

/**
 * One person in two tabs of one browser (same stored user id and name) runs code in both. Tab B's
 * `execute_code` is held back in the page (as a slow network would) until tab A's result has reached B,
 * so B has a run of its own waiting for its id when A's result — same user id — arrives. Each tab's
 * entry must get the id of its own run, and each tab must show the other's run as "(another tab)",
 * once. (Matching results to runs first-in-first-out per user id gets this wrong.)
 */
export async function sameUserTwoTabs(browser, base) {
  const a = await openPage(browser, null, { ignore: NETWORK_NOISE });
  const code = await createInterview(a, base, { name: 'Dana', language: 'javascript', title: 'Two tabs' });
  await waitSaved(a);
  const b = await newTab(a.context(), { ignore: NETWORK_NOISE });
  await b.goto(`${base}/interview/${code}`);
  await waitSaved(b);
  const ids = await Promise.all([a, b].map((p) => p.evaluate(() => window.duet.model.self.user_id)));
  assert.equal(ids[0], ids[1], 'both tabs are the same user (the participant token kept for the interview)');

  // In tab B: hold execute_code until the test lets it go; count the results the connection receives.
  await b.evaluate(() => {
    const c = window.duet.connection;
    const request = c.request.bind(c);
    const held = new Promise((r) => {
      window.releaseShare = r;
    });
    c.request = (event, ...args) => (event === 'execute_code' ? held.then(() => request(event, ...args)) : request(event, ...args));
    window.resultsSeen = 0;
    c.on('execution_result', () => window.resultsSeen++);
  });
  await setCode(b, 'console.log("from tab B")');
  assert.equal((await runCode(b)).status, 'ok');
  await setCode(a, 'console.log("from tab A")');
  assert.equal((await runCode(a)).status, 'ok');
  await b.waitForFunction(() => window.resultsSeen >= 1, null, { timeout: 20000 }); // A's result reached B
  await b.evaluate(() => window.releaseShare());

  // Settled: both own entries answered, each tab shows one run it did not make.
  const settled = (p) =>
    p.waitForFunction(
      () =>
        document.querySelector('#output .run-local')?.dataset.resultId &&
        document.querySelectorAll('#output .run:not(.run-local)').length >= 1,
      null,
      { timeout: 20000 },
    );
  await settled(a);
  await settled(b);
  await b.waitForTimeout(300); // anything more that would arrive (a duplicate) arrives now
  const ra = await runEntries(a);
  const rb = await runEntries(b);
  const own = (rs) => rs.filter((r) => r.local);
  const others = (rs) => rs.filter((r) => !r.local);
  assert.equal(own(ra).length, 1, JSON.stringify(ra));
  assert.equal(own(rb).length, 1, JSON.stringify(rb));
  const idA = own(ra)[0].resultId;
  const idB = own(rb)[0].resultId;
  assert.ok(idA && idB && idA !== idB, `each tab has its own run id: ${idA} / ${idB}`);
  assert.match(own(ra)[0].output, /from tab A/);
  assert.match(own(rb)[0].output, /from tab B/);
  assert.ok(own(ra)[0].notes.includes(' · shared'), JSON.stringify(ra));
  assert.ok(own(rb)[0].notes.includes(' · shared'), JSON.stringify(rb));
  assert.deepEqual(
    others(rb).map((r) => [r.who, r.output.trim(), r.resultId]),
    [['Dana (another tab)', 'from tab A', idA]],
    "tab B shows tab A's run, and only that",
  );
  assert.deepEqual(
    others(ra).map((r) => [r.who, r.output.trim(), r.resultId]),
    [['Dana (another tab)', 'from tab B', idB]],
    "tab A shows tab B's run, and only that",
  );
  assert.deepEqual(a.problems, []);
  assert.deepEqual(b.problems, []);
  await a.context().close();
}

/**
 * The server is killed while Alice keeps typing: her page shows offline with unsaved edits; the
 * server comes back, both reconnect, and Bob gets every character Alice typed.
 */
export async function killAndRestart(backend, { alice, bob }) {
  await setCode(alice, 'const kept = "before the crash";\n');
  await waitText(bob, (t) => t.includes('before the crash'));
  await waitSaved(alice);
  await backend.stop();
  await alice.waitForSelector('#status:is([data-state="reconnecting"], [data-state="offline"])', { timeout: 20000 });
  await focusEnd(alice);
  const typed = '// typed while the server was down';
  await alice.keyboard.type(typed, { delay: 10 });
  await alice.waitForSelector('#status[data-state="offline"]');
  const unsaved = Number(await alice.getAttribute('#status', 'data-unsaved'));
  assert.ok(unsaved >= 1, `unsaved edits counted: ${unsaved}`);
  assert.match(await alice.textContent('#status .status-text'), /Offline · \d+ unsaved edits?/);
  await backend.start();
  await waitSaved(alice, 30000);
  assert.equal(await alice.getAttribute('#status', 'data-unsaved'), '0');
  const final = await waitText(bob, (t) => t.includes(typed), 30000);
  assert.equal(final, await text(alice), 'nothing typed is lost');
  assert.ok(final.includes('before the crash'));
  await waitSaved(bob, 30000);
}

/** An unknown code gets a clear message on the landing page and on the editor URL. */
export async function unknownCode(browser, base) {
  const page = await openPage(browser, `${base}/`, { ignore: [/404/] });
  await page.fill('#join-code', 'ZZZZZZZZ');
  await page.click('#join-submit');
  await page.waitForSelector('#join-error:not([hidden])');
  assert.match(await page.textContent('#join-error'), /No interview has the code ZZZZZZZZ/);
  await page.fill('#join-code', 'hello');
  await page.click('#join-submit');
  assert.match(await page.textContent('#join-error'), /not an interview code/);
  await page.goto(`${base}/interview/ZZZZZZZZ`);
  await page.waitForFunction(() => /not found/i.test(document.body.innerText));
  await page.context().close();
}

/** Screenshots a person can look at: landing (light, dark, narrow) and the editor with two people. */
export async function screenshots(browser, base, { alice, bob }, prefix) {
  const landing = await openPage(browser, `${base}/`);
  await screenshot(landing, `${prefix}landing-light`);
  await landing.context().close();
  const dark = await openPage(browser, `${base}/`, { colorScheme: 'dark' });
  await screenshot(dark, `${prefix}landing-dark`);
  await dark.context().close();
  const narrow = await openPage(browser, `${base}/`, { viewport: { width: 390, height: 844 } });
  await screenshot(narrow, `${prefix}landing-narrow`);
  await narrow.context().close();
  await screenshot(alice, `${prefix}editor-alice`);
  await screenshot(bob, `${prefix}editor-bob`);
  const size = bob.viewportSize();
  await bob.setViewportSize({ width: 390, height: 844 });
  await bob.waitForTimeout(200);
  await screenshot(bob, `${prefix}editor-narrow`);
  await bob.setViewportSize(size);
  await bob.emulateMedia({ colorScheme: 'dark' });
  await bob.waitForTimeout(200);
  await screenshot(bob, `${prefix}editor-dark`);
  await bob.emulateMedia({ colorScheme: 'light' });
}
