// Issue 14 in the browser, against the real all-in-one server (target/debug/duet; real headless
// Chromium driven by playwright-core): the interviewer link and its token, the candidate's lobby,
// start → live → end, the interviewer's controls (lock, runs, remove), the password, refused edits
// resynced, and no console errors.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { launch, newPage, screenshot } from './browser/chromium.js';
import { buildFrontend } from './browser/frontend.js';
import { DuetServer } from './browser/duet-server.js';
import { NETWORK_NOISE, focusEnd, openPage, text, waitSaved, waitText } from './browser/scenarios.js';

/** Wrong passwords allowed per minute: the third attempt of the password test is rate limited. */
const PASSWORD_FAILURES = 2;

const editable = (page) => page.evaluate(() => !window.duet.editor.getReadOnly());
const activity = (page) => page.textContent('#activity');

/** A page that records `location.href` when the `load` event fires (window.__hrefAtLoad). */
async function trackedPage(browser, opts = {}) {
  const page = await newPage(browser, { ignore: NETWORK_NOISE, ...opts });
  await page.addInitScript(() => {
    window.addEventListener('load', () => {
      window.__hrefAtLoad = window.location.href;
    });
  });
  return page;
}

/** Fills the landing page's create form and submits it; returns the code shown afterwards. */
async function createOnLanding(page, base, { name, title, lobby = false, password = '' }) {
  await page.goto(`${base}/`);
  await page.fill('#create-name', name);
  await page.fill('#create-title-input', title);
  if (lobby) await page.check('#create-lobby');
  if (password) await page.fill('#create-password', password);
  await page.click('#create-submit');
  await page.waitForSelector('#created:not([hidden])');
  return (await page.textContent('#created-code')).trim();
}

/** A candidate opens the candidate link and gives a name (and a password, when asked). */
async function candidateJoins(browser, base, code, name, { password, ignore = [] } = {}) {
  const page = await openPage(browser, null, { ignore: [...NETWORK_NOISE, ...ignore] });
  await page.goto(`${base}/interview/${code}`);
  await page.waitForSelector('#name-dialog[open]');
  await page.fill('#name-input', name);
  if (password !== undefined) await page.fill('#password-input', password);
  await page.click('#join-btn');
  return page;
}

describe('interviews in the browser against the real duet server', { timeout: 600000 }, () => {
  let server;
  let browser;
  const ctx = {};

  before(async () => {
    buildFrontend();
    server = await new DuetServer({ env: { DUET_API__PASSWORD_FAILURES_PER_MINUTE: String(PASSWORD_FAILURES) } }).start();
    browser = await launch();
  });

  after(async () => {
    await browser?.close();
    await server?.close();
  });

  test('creating with a lobby shows both links, the interviewer link marked private; opening it keeps its token out of the address bar', async () => {
    const base = server.url;
    const ivy = await trackedPage(browser);
    const code = await createOnLanding(ivy, base, { name: 'Ivy', title: 'Lobby round', lobby: true });
    assert.match(code, /^[23456789ABCDEFGHJKMNPQRSTVWXYZ]{8}$/);
    const candidateLink = await ivy.inputValue('#created-candidate-link');
    const interviewerLink = await ivy.inputValue('#created-interviewer-link');
    assert.equal(candidateLink, `${base}/interview/${code}`);
    const token = new URL(interviewerLink).hash.replace(/^#token=/, '');
    assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/, 'a JWT in the fragment');
    assert.equal(interviewerLink, `${candidateLink}#token=${token}`);
    // The interviewer link is the one marked private; the candidate's is not.
    assert.equal((await ivy.textContent('.private-link:has(#created-interviewer-link) .private-tag')).trim(), 'private');
    assert.equal(await ivy.locator('.private-link:has(#created-candidate-link)').count(), 0);
    await screenshot(ivy, 'interview-created');
    const rest = await (await fetch(`${base}/api/session/${code}`)).json();
    assert.equal(rest.state, 'waiting');
    assert.equal(rest.interviewer_token, undefined);

    await ivy.click('#open-interview');
    await ivy.waitForURL(`${base}/interview/${code}`);
    await waitSaved(ivy);
    assert.equal(await ivy.evaluate(() => window.__hrefAtLoad), `${base}/interview/${code}`, 'no token in location.href at load');
    assert.equal(await ivy.evaluate(() => window.location.href), `${base}/interview/${code}`);
    assert.ok(!ivy.url().includes(token));
    assert.equal(await ivy.evaluate((c) => localStorage.getItem(`duet.link.${c}`), code), token, 'kept for this interview');
    const participant = JSON.parse(await ivy.evaluate((c) => localStorage.getItem(`duet.participant.${c}`), code));
    assert.equal(participant.role, 'interviewer');
    assert.notEqual(participant.token, token, 'exchanged for a participant token');

    // An interviewer sees the editor (to prepare), the waiting state, Start, and the controls.
    assert.equal(await ivy.getAttribute('#lifecycle', 'data-state'), 'waiting');
    assert.equal((await ivy.textContent('#role-badge')).trim(), 'Interviewer');
    assert.ok(await ivy.isVisible('#start-btn'));
    assert.ok(await ivy.isHidden('#end-btn'));
    assert.ok(await ivy.isVisible('#controls-panel'));
    assert.ok(await ivy.isHidden('#lobby'));
    assert.ok(await editable(ivy));
    await focusEnd(ivy);
    await ivy.keyboard.type('// task: reverse a list\n');
    await waitSaved(ivy);
    // The share dialog offers the candidate link and, marked private, the interviewer link.
    await ivy.click('#share-btn');
    assert.equal(await ivy.inputValue('#share-link'), candidateLink);
    assert.equal(await ivy.inputValue('#share-interviewer-link'), interviewerLink);
    await ivy.keyboard.press('Escape');
    Object.assign(ctx, { ivy, code, token });
  });

  test('a candidate waits in the lobby, not the editor; the interviewer starts; both edit; time runs', async () => {
    const { ivy, code } = ctx;
    const cody = await candidateJoins(browser, server.url, code, 'Cody');
    await cody.waitForSelector('#lobby:not([hidden])');
    assert.match(await cody.textContent('#lobby-title'), /Waiting for the interviewer to start/);
    assert.ok(await cody.isHidden('.workspace'), 'no editor in the lobby');
    assert.ok(await cody.isHidden('#run-btn'));
    assert.equal(await cody.evaluate(() => window.duet.model.role), 'candidate');
    assert.equal(await cody.evaluate(() => window.duet.model.permissions.lobby), true);
    await ivy.waitForFunction(() => document.querySelectorAll('#participants .participant').length === 2);
    // Cody's hidden editor shows the interviewer no cursor, even as the text before it changes.
    await focusEnd(ivy);
    await ivy.keyboard.type('// (write in JavaScript)\n');
    await waitText(cody, (t) => t.endsWith('(write in JavaScript)\n'));
    await ivy.waitForTimeout(300);
    assert.deepEqual(await ivy.evaluate(() => window.duet.binding.remoteCursors()), [], 'no cursor from the lobby');
    await screenshot(cody, 'interview-lobby-candidate');
    await screenshot(ivy, 'interview-waiting-interviewer');

    await ivy.click('#start-btn');
    await cody.waitForSelector('#lobby', { state: 'hidden' });
    await waitSaved(cody);
    assert.ok(await cody.isVisible('.workspace'));
    assert.ok(await cody.isVisible('#editor .ace_content'));
    assert.equal(await cody.getAttribute('#lifecycle', 'data-state'), 'live');
    assert.ok(await ivy.isHidden('#start-btn'));
    assert.ok(await ivy.isVisible('#end-btn'));
    assert.match(await activity(cody), /The interview has started/);
    assert.equal(await text(cody), '// task: reverse a list\n// (write in JavaScript)\n', 'the candidate sees what the interviewer prepared');

    await focusEnd(cody);
    await cody.keyboard.type('const r = (a) => a.reverse();\n');
    await waitText(ivy, (t) => t.includes('a.reverse()'));
    await focusEnd(ivy);
    await ivy.keyboard.type('// ok\n');
    const both = await waitText(cody, (t) => t.endsWith('// ok\n'));
    assert.equal(both, await text(ivy));

    // The elapsed time since the start, in the top bar, advancing.
    await ivy.waitForSelector('#elapsed:not([hidden])');
    const t1 = await ivy.textContent('#elapsed');
    assert.match(t1, /^\d+:\d\d$/);
    await ivy.waitForFunction((t) => document.getElementById('elapsed').textContent !== t, t1, { timeout: 3000 });
    assert.match(await cody.textContent('#elapsed'), /^\d+:\d\d$/);

    // A reload keeps the candidate's identity (the kept participant token): no name asked, same id.
    const before = await cody.evaluate(() => window.duet.model.self.user_id);
    await cody.reload();
    await waitSaved(cody);
    assert.equal(await cody.evaluate(() => document.getElementById('name-dialog').open), false);
    assert.equal(await cody.evaluate(() => window.duet.model.self.user_id), before);
    assert.equal(await cody.evaluate(() => window.duet.model.role), 'candidate');
    await waitSaved(ivy);
    Object.assign(ctx, { cody });
  });

  test('locked: the candidate is read-only with a notice; a forced edit is refused, dropped and resynced; unlocked again', async () => {
    const { ivy, cody } = ctx;
    await cody.evaluate(() => {
      window.__serverErrors = [];
      window.duet.model.on('server-error', (e) => window.__serverErrors.push(e));
    });
    await ivy.check('#ctl-lock');
    await cody.waitForFunction(() => window.duet.editor.getReadOnly());
    await cody.waitForSelector('#interview-banner[data-kind="locked"]:not([hidden])');
    assert.match(await cody.textContent('#interview-banner'), /locked editing/);
    assert.equal(await cody.isDisabled('#language'), true);
    assert.ok(await editable(ivy), 'the interviewer still edits');
    const before = await text(ivy);
    // Typing does nothing.
    await focusEnd(cody);
    await cody.keyboard.type('zzz');
    await cody.waitForTimeout(300);
    assert.equal(await text(cody), before);

    // An edit that gets past the page (as one typed just before the lock arrived would): the hub
    // refuses it, and the page drops it and loads the document again instead of staying diverged.
    const oldClient = await cody.evaluate(() => window.duet.doc.clientID);
    await cody.evaluate(() => window.duet.ytext.insert(0, 'FORCED '));
    await cody.waitForFunction(() => /not saved: the interviewer locked editing/.test(document.getElementById('activity').textContent));
    await waitText(cody, (t) => t === before);
    assert.equal(await cody.evaluate(() => window.duet.editor.getValue()), before, 'Ace shows the server text again');
    assert.notEqual(await cody.evaluate(() => window.duet.doc.clientID), oldClient, 'a fresh document');
    await cody.waitForSelector('#status[data-state="saved"]');
    assert.equal(await cody.getAttribute('#status', 'data-unsaved'), '0');
    assert.equal(await text(ivy), before, 'the interviewer never saw it');
    // The interviewer's edits keep reaching the resynced document.
    await focusEnd(ivy);
    await ivy.keyboard.type('// still locked\n');
    await waitText(cody, (t) => t.endsWith('// still locked\n'));
    // Again and again: each fresh document has a new awareness id, and the hub takes at most four
    // per connection; past that the page joins afresh. Each time the text comes back.
    const locked = await text(ivy);
    for (let i = 0; i < 4; i++) {
      const doc = await cody.evaluate(() => window.duet.doc.clientID);
      await cody.evaluate((n) => window.duet.ytext.insert(0, `FORCED ${n} `), i);
      await cody.waitForFunction((d) => window.duet.doc.clientID !== d && !window.duet.model.resyncing, doc);
      await waitText(cody, (t) => t === locked);
    }
    await waitSaved(ivy);
    assert.equal(await text(ivy), locked);

    await screenshot(cody, 'interview-locked-candidate');
    await ivy.uncheck('#ctl-lock');
    await cody.waitForFunction(() => !window.duet.editor.getReadOnly());
    assert.ok(await cody.isHidden('#interview-banner'));
    await focusEnd(cody);
    await cody.keyboard.type('// unlocked\n');
    await waitText(ivy, (t) => t.endsWith('// unlocked\n'));
    await waitSaved(cody);
    // Cody's cursor (published from the newest document) reaches Ivy, with his name.
    await ivy.waitForFunction(() => window.duet.binding.remoteCursors().some((c) => c.name === 'Cody'));
    assert.deepEqual(await cody.evaluate(() => window.__serverErrors), [], 'no refusal (of the new awareness ids, or else)');
  });

  test('code running off: the candidate\'s Run is disabled with the reason; on again', async () => {
    const { ivy, cody } = ctx;
    await ivy.uncheck('#ctl-runs');
    await cody.waitForSelector('#run-btn:disabled');
    assert.match(await cody.textContent('#run-reason'), /turned code running off/);
    assert.match(await cody.getAttribute('#run-btn', 'title'), /turned code running off/);
    await cody.evaluate(() => window.duet.editor.focus());
    await cody.keyboard.press('Control+Enter');
    await cody.waitForTimeout(300);
    assert.equal(await cody.locator('#output .run-local').count(), 0, 'Ctrl+Enter does not run either');
    assert.ok(await ivy.isEnabled('#run-btn'), 'interviewers still run');
    await ivy.check('#ctl-runs');
    await cody.waitForSelector('#run-btn:enabled');
    assert.ok(await cody.isHidden('#run-reason'));
  });

  test('an interviewer removes a participant: they are told and cannot come back with that identity', async () => {
    const { ivy, code } = ctx;
    const rex = await candidateJoins(browser, server.url, code, 'Rex');
    await waitSaved(rex);
    await ivy.waitForFunction(() => document.querySelectorAll('#participants .participant').length === 3);
    const rexId = await rex.evaluate(() => window.duet.model.self.user_id);
    const row = ivy.locator(`#participants .participant[data-user-id="${rexId}"]`);
    assert.equal(await ivy.locator('#participants .participant .remove-btn').count(), 2, 'everyone but oneself');
    await row.locator('.remove-btn').click();
    await ivy.waitForSelector('#confirm-dialog[open]');
    assert.match(await ivy.textContent('#confirm-title'), /Remove Rex/);
    await ivy.click('#confirm-ok');
    await rex.waitForSelector('#fatal:not([hidden])');
    assert.match(await rex.textContent('#fatal-title'), /removed/);
    await ivy.waitForFunction(() => document.querySelectorAll('#participants .participant').length === 2);
    await rex.reload();
    await rex.waitForSelector('#fatal:not([hidden])');
    assert.match(await rex.textContent('#fatal-title'), /removed/);
    // Candidates get no Remove buttons and no controls.
    assert.equal(await ctx.cody.locator('.remove-btn').count(), 0);
    assert.ok(await ctx.cody.isHidden('#controls-panel'));
    await rex.context().close();
  });

  test('a returning candidate: the socket connects and the join request goes out while the session is still being fetched', async () => {
    const { code } = ctx;
    const page = await openPage(browser, null, { ignore: NETWORK_NOISE, name: 'Quinn' });
    const started = [];
    page.on('request', (r) => started.push({ url: new URL(r.url()), method: r.method(), at: Date.now() }));
    // GET /api/session/<code> is held for a while: what the page does meanwhile does not wait for it.
    let released = Infinity;
    await page.route(`**/api/session/${code}`, async (route) => {
      await new Promise((r) => setTimeout(r, 700));
      released = Date.now();
      await route.continue();
    });
    await page.goto(`${server.url}/interview/${code}`);
    await waitSaved(page);
    const first = (pred) => started.find(pred)?.at ?? Infinity;
    const socketAt = first((r) => r.url.pathname.startsWith('/socket.io/'));
    const joinAt = first((r) => r.method === 'POST' && r.url.pathname === `/api/session/${code}/join`);
    assert.ok(socketAt < released, 'the Engine.IO handshake started before the session was answered');
    assert.ok(joinAt < released, 'the join request went out before the session was answered');
    assert.equal(await page.evaluate(() => window.duet.model.role), 'candidate');
    assert.equal(await page.evaluate(() => window.duet.connection.socket.connected), true);
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });

  test('a returning candidate (name known) on an interview with a password is asked for it, then joins', async () => {
    const base = server.url;
    const host = await openPage(browser, null, { ignore: NETWORK_NOISE });
    const code = await createOnLanding(host, base, { name: 'Hal', title: 'Side door', password: 'open-up' });
    const page = await openPage(browser, null, { ignore: [...NETWORK_NOISE, /401/], name: 'Rae' });
    await page.goto(`${base}/interview/${code}`);
    await page.waitForSelector('#name-dialog[open]');
    assert.ok(await page.isVisible('#password-field'));
    assert.equal(await page.inputValue('#name-input'), 'Rae');
    assert.match(await page.textContent('#name-error'), /needs a password/);
    await page.fill('#password-input', 'open-up');
    await page.click('#join-btn');
    await waitSaved(page);
    assert.equal(await page.evaluate(() => window.duet.model.role), 'candidate');
    assert.equal(await page.evaluate(() => window.duet.model.self?.name), 'Rae');
    assert.deepEqual(page.problems, []);
    await Promise.all([host, page].map((p) => p.context().close()));
  });

  test('an interview gone by the time the page asks (name known): "not found", and the socket opened beside the lookup is closed', async () => {
    const { code } = ctx;
    const page = await openPage(browser, null, { ignore: [...NETWORK_NOISE, /404/], name: 'Uma' });
    // The page was served for an interview the session API no longer knows (erased meanwhile).
    const gone = (route) =>
      route.fulfill({ status: 404, contentType: 'application/json', body: JSON.stringify({ error: { code: 'session_not_found', message: 'no interview with that code' } }) });
    await page.route(`**/api/session/${code}`, gone);
    await page.route(`**/api/session/${code}/join`, gone);
    let socketRequests = 0;
    page.on('request', (r) => {
      if (r.url().includes('/socket.io/')) socketRequests += 1;
    });
    await page.goto(`${server.url}/interview/${code}`);
    await page.waitForSelector('#fatal:not([hidden])');
    assert.match(await page.textContent('#fatal-title'), /Interview not found/);
    assert.ok(socketRequests > 0, 'the socket was opened beside the lookup');
    assert.equal(await page.evaluate(() => window.duet), undefined, 'no editor was set up');
    // Nothing is left polling or connected once the page settles.
    await page.waitForTimeout(500);
    const settled = socketRequests;
    await page.waitForTimeout(1500);
    assert.equal(socketRequests, settled);
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });

  test('a password: asked of the candidate; a wrong one is an inline error; too many say to wait', async () => {
    const base = server.url;
    const host = await openPage(browser, null, { ignore: NETWORK_NOISE });
    const code = await createOnLanding(host, base, { name: 'Hal', title: 'Locked door', password: 'sesame' });
    assert.match(await host.textContent('#created-extras'), /password/);
    const rest = await (await fetch(`${base}/api/session/${code}`)).json();
    assert.equal(rest.has_password, true);
    assert.equal(rest.state, 'live');

    const pat = await candidateJoins(browser, base, code, 'Pat', { password: 'wrong-1', ignore: [/401/, /429/] });
    await pat.waitForSelector('#name-error:not([hidden])');
    assert.ok(await pat.isVisible('#password-field'));
    assert.match(await pat.textContent('#name-error'), /Wrong password/);
    assert.equal(await pat.evaluate(() => document.getElementById('name-dialog').open), true);
    await pat.fill('#password-input', 'sesame');
    await pat.click('#join-btn');
    await waitSaved(pat);
    assert.equal(await pat.evaluate(() => window.duet.model.role), 'candidate');

    // Another browser gets it wrong until the per-IP budget of wrong passwords is spent.
    const sam = await candidateJoins(browser, base, code, 'Sam', { password: 'wrong-2', ignore: [/401/, /429/] });
    await sam.waitForFunction(() => /Wrong password/.test(document.getElementById('name-error').textContent));
    // Budget: PASSWORD_FAILURES wrong passwords a minute from this IP (Pat's and Sam's first); the
    // next attempt is refused with 429 and a Retry-After.
    for (let i = 0; i < 3 && !/Too many/.test(await sam.textContent('#name-error')); i++) {
      await sam.evaluate(() => {
        document.getElementById('name-error').textContent = '';
      });
      await sam.fill('#password-input', `wrong-${i + 3}`);
      await sam.click('#join-btn');
      await sam.waitForFunction(() => document.getElementById('name-error').textContent !== '');
    }
    await sam.waitForFunction(() => /Too many attempts\. Please wait \d+ seconds/.test(document.getElementById('name-error').textContent));
    assert.equal(await sam.isDisabled('#join-btn'), true, 'Join waits');
    assert.match(await sam.textContent('#join-btn'), /Wait \d+ s/);
    assert.deepEqual(pat.problems, []);
    assert.deepEqual(sam.problems, []);
    await screenshot(sam, 'interview-password-wait');
    await Promise.all([host, pat, sam].map((p) => p.context().close()));
  });

  test('a server without POST /join: the page joins without a token, as before', async () => {
    const { code } = ctx;
    const page = await openPage(browser, null, { ignore: [...NETWORK_NOISE, /404/], name: 'Old' });
    await page.route('**/api/session/*/join', (route) =>
      route.fulfill({ status: 404, contentType: 'application/json', body: JSON.stringify({ error: { code: 'not_found', message: 'no such API path' } }) }),
    );
    await page.goto(`${server.url}/interview/${code}`);
    await waitSaved(page);
    assert.equal(await page.evaluate(() => window.duet.connection.token), undefined);
    assert.equal(await page.evaluate(() => window.duet.model.role), 'candidate');
    assert.equal(await page.evaluate((c) => localStorage.getItem(`duet.participant.${c}`), code), null);
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });

  test('a broken interviewer link: "does not work", the token forgotten and out of the address bar', async () => {
    const { code } = ctx;
    const page = await trackedPage(browser, { ignore: [/401/, /404/] });
    await page.addInitScript(() => localStorage.setItem('duet.name', 'Mal'));
    await page.goto(`${server.url}/interview/${code}#token=forged.not.valid`);
    await page.waitForSelector('#fatal:not([hidden])');
    assert.match(await page.textContent('#fatal-title'), /interviewer link does not work/);
    assert.equal(await page.evaluate(() => window.__hrefAtLoad), `${server.url}/interview/${code}`);
    assert.equal(await page.evaluate((c) => localStorage.getItem(`duet.link.${c}`), code), null, 'forgotten');
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });

  test('ending asks first; then both are read-only with a banner, the final code stays, and a forced edit is resynced', async () => {
    const { ivy, cody, code } = ctx;
    await ivy.click('#end-btn');
    await ivy.waitForSelector('#confirm-dialog[open]');
    await ivy.click('#confirm-cancel');
    await ivy.waitForTimeout(300);
    assert.equal(await ivy.getAttribute('#lifecycle', 'data-state'), 'live', 'cancel keeps it live');

    await waitSaved(ivy);
    await waitSaved(cody);
    const final = await text(ivy);
    await ivy.click('#end-btn');
    await ivy.click('#confirm-ok');
    for (const p of [ivy, cody]) {
      await p.waitForSelector('#lifecycle[data-state="ended"]');
      await p.waitForFunction(() => window.duet.editor.getReadOnly());
      await p.waitForSelector('#interview-banner[data-kind="ended"]:not([hidden])');
      assert.match(await p.textContent('#interview-banner'), /has ended/);
      assert.equal(await p.evaluate(() => window.duet.editor.getValue()), final, 'the final code is shown');
      assert.ok(await p.isVisible('#editor .ace_content'));
    }
    assert.ok(await ivy.isHidden('#end-btn'));
    assert.ok(await ivy.isHidden('#start-btn'));
    assert.equal(await ivy.isDisabled('#ctl-lock'), true);
    assert.equal(await cody.isDisabled('#run-btn'), true);
    assert.match(await cody.textContent('#run-reason'), /has ended/);
    // The elapsed time stops at the end.
    const e1 = await ivy.textContent('#elapsed');
    await ivy.waitForTimeout(1200);
    assert.equal(await ivy.textContent('#elapsed'), e1);

    // An interviewer's edit forced past the read-only editor: refused, dropped, resynced.
    await ivy.evaluate(() => window.duet.ytext.insert(0, 'AFTER THE END '));
    await ivy.waitForFunction(() => /not saved: the interview has ended/.test(document.getElementById('activity').textContent));
    await waitText(ivy, (t) => t === final);
    assert.equal(await ivy.evaluate(() => window.duet.editor.getValue()), final);
    assert.equal(await text(cody), final);
    let rest;
    for (let i = 0; i < 50; i++) {
      rest = await (await fetch(`${server.url}/api/session/${code}`)).json();
      if (rest.code === final) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(rest.state, 'ended');
    assert.equal(rest.code, final, 'the server kept the final code, nothing after');

    // Opening the interview after the end: read-only, final code.
    const late = await openPage(browser, `${server.url}/interview/${code}`, { name: 'Lou', ignore: NETWORK_NOISE });
    await late.waitForSelector('#lifecycle[data-state="ended"]');
    await late.waitForFunction((f) => window.duet?.ytext.toString() === f, final);
    assert.equal(await late.evaluate(() => window.duet.editor.getReadOnly()), true);
    await screenshot(ivy, 'interview-ended-interviewer');
    await screenshot(cody, 'interview-ended-candidate');
    assert.deepEqual(late.problems, []);
    await late.context().close();
  });

  test('no console errors on the interviewer\'s and the candidate\'s pages', () => {
    assert.deepEqual(ctx.ivy.problems, []);
    assert.deepEqual(ctx.cody.problems, []);
  });
});
