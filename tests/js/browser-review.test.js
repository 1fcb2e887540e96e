// After the interview, in the browser, against the real all-in-one server (target/debug/duet; headless
// Chromium driven by playwright-core): a candidate types, pastes, leaves the tab and comes back, runs
// the code; the interviewer sees the paste and the absence live (activity list, toast, "away" tag),
// takes notes and ends the interview. Then the review page (/review/<code>#token=…): one track per
// participant with markers for the run (its output on click), the paste, the time away, the joins,
// start and end; the code at any moment (scrubbing back to the start is empty, the end is the final
// code, just before and after the paste differ by it); playing at 32× runs through to the end with
// the idle stretches skipped; the notes beside; Download gives the export zip. A candidate's token
// gets no record and the page says so; so do an altered token (401) and an interview gone (404). The
// record and the history are asked for by the page's small first script before its bundle has arrived,
// once each, and by the bundle when that script is missing. No console errors.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { launch, screenshot } from './browser/chromium.js';
import { buildFrontend } from './browser/frontend.js';
import { DuetServer } from './browser/duet-server.js';
import { NETWORK_NOISE, focusEnd, openPage, runCode, waitRemoteRun, waitSaved, waitText } from './browser/scenarios.js';

const PASTED = 'def solve(xs):\n    return sorted(xs)\n';

/** A candidate opens the candidate link and gives a name. */
async function candidateJoins(browser, base, code, name) {
  const page = await openPage(browser, null, { ignore: NETWORK_NOISE });
  await page.goto(`${base}/interview/${code}`);
  await page.waitForSelector('#name-dialog[open]');
  await page.fill('#name-input', name);
  await page.click('#join-btn');
  await waitSaved(page);
  return page;
}

/** Makes the page believe its tab was hidden (or shown again), as switching tabs does. */
async function setHidden(page, hidden) {
  await page.evaluate((h) => {
    Object.defineProperty(document, 'visibilityState', { value: h ? 'hidden' : 'visible', configurable: true });
    document.dispatchEvent(new Event('visibilitychange'));
  }, hidden);
}

const review = (page) => page.evaluate(() => ({ t: window.duetReview.t, start: window.duetReview.start, end: window.duetReview.end, text: window.duetReview.editor.getValue(), playing: window.duetReview.playing }));

describe('the review page against the real duet server', { timeout: 600000 }, () => {
  let server;
  let browser;
  const ctx = {};

  before(async () => {
    buildFrontend();
    server = await new DuetServer().start();
    browser = await launch();
  });

  after(async () => {
    await browser?.close();
    await server?.close();
  });

  test('an interview: typing, a paste, a tab left and back, a run, notes; the interviewer sees the activity live', async () => {
    const base = server.url;
    const res = await fetch(`${base}/api/session`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ language: 'javascript', title: 'Review round' }),
    });
    assert.equal(res.status, 201);
    const created = await res.json();
    Object.assign(ctx, { code: created.session_code, token: created.interviewer_token });

    const ivy = await openPage(browser, null, { ignore: NETWORK_NOISE, name: 'Ivy' });
    await ivy.goto(`${base}/interview/${ctx.code}#token=${ctx.token}`);
    await waitSaved(ivy);
    const cara = await candidateJoins(browser, base, ctx.code, 'Cara');
    ctx.ivy = ivy;
    ctx.cara = cara;

    await focusEnd(cara);
    await cara.keyboard.type('// two sum\n', { delay: 15 });
    await waitSaved(cara);
    // A paste, through Ace's own paste path (what a real Ctrl+V runs).
    await cara.evaluate((t) => window.duet.editor.onPaste(t), PASTED);
    await waitText(ivy, (t) => t.includes('sorted(xs)'));
    await ivy.waitForFunction(() => [...document.querySelectorAll('#activity li')].some((li) => /Cara pasted 37 characters/.test(li.textContent)));
    assert.equal(await ivy.locator('.toast', { hasText: 'Cara pasted 37 characters' }).count(), 1, 'and a toast says so');

    // The candidate leaves the tab: the interviewer sees them away until they are back.
    await setHidden(cara, true);
    await ivy.waitForSelector('.participant-away .away-tag');
    await ivy.waitForFunction(() => [...document.querySelectorAll('#activity li')].some((li) => /Cara left the page/.test(li.textContent)));
    await cara.waitForTimeout(1500);
    await setHidden(cara, false);
    await ivy.waitForSelector('.participant-away', { state: 'detached' });
    await ivy.waitForFunction(() => [...document.querySelectorAll('#activity li')].some((li) => /Cara came back/.test(li.textContent)));
    // The candidate's own page shows none of it.
    assert.equal(await cara.locator('#activity li', { hasText: 'pasted' }).count(), 0);
    assert.equal(await cara.locator('.away-tag').count(), 0);

    await cara.evaluate(() => window.duet.editor.setValue('console.log([3, 1, 2].sort().join(","))', 1));
    await waitSaved(cara);
    const run = await runCode(cara);
    assert.equal(run.status, 'ok', run.output);
    await waitRemoteRun(ivy, 'Cara', 1);

    await ivy.waitForSelector('#notes-status[data-state="saved"]');
    await ivy.evaluate(() => {
      window.duet.notes.editor.focus();
      window.duet.notes.editor.navigateFileEnd();
    });
    await ivy.keyboard.type('Sorted it quickly.', { delay: 10 });
    await ivy.waitForSelector('#notes-status[data-state="saved"]');

    await ivy.click('#end-btn');
    await ivy.waitForSelector('#confirm-dialog[open]');
    await ivy.click('#confirm-ok');
    await ivy.waitForSelector('#lifecycle[data-state="ended"]');
    ctx.finalCode = await ivy.evaluate(() => window.duet.ytext.toString());
    // The interviewer's banner links to the review, which opens with the token this browser kept.
    assert.equal(await cara.locator('#review-link').count(), 0, 'no review link for the candidate');
    await ivy.click('#review-link');
    await ivy.waitForURL(new RegExp(`/review/${ctx.code}$`));
    await ivy.waitForSelector('body[data-ready="true"]', { timeout: 20000 });
    assert.equal(await ivy.evaluate(() => window.duetReview.editor.getValue()), ctx.finalCode);
    for (const p of [ivy, cara]) assert.deepEqual(p.problems, []);
  });

  test('the review: tracks and markers, the code at any moment, play at 32x, notes, download', async () => {
    assert.ok(ctx.code, 'the interview was recorded');
    const base = server.url;
    // A fresh browser profile: the token comes from the link alone.
    const page = await openPage(browser, null);
    await page.goto(`${base}/review/${ctx.code}#token=${ctx.token}`);
    await page.waitForSelector('body[data-ready="true"]', { timeout: 20000 });
    assert.ok(!page.url().includes('token='), 'the token left the address bar');

    // One track per participant (and the interview's own), with their markers.
    const tracks = await page.$$eval('.track', (ts) => ts.map((t) => ({ name: t.querySelector('.track-label').textContent, kinds: [...t.querySelectorAll('.marker')].map((m) => m.dataset.kind) })));
    const byName = Object.fromEntries(tracks.map((t) => [t.name, t.kinds]));
    assert.deepEqual(Object.keys(byName).sort(), ['Cara', 'Interview', 'Ivy'], JSON.stringify(tracks));
    for (const k of ['join', 'paste', 'blur', 'focus', 'run']) assert.ok(byName.Cara.includes(k), `Cara's track has a ${k} marker: ${byName.Cara}`);
    assert.ok(byName.Interview.includes('start') && byName.Interview.includes('end'), byName.Interview.join());
    assert.ok(byName.Ivy.includes('join'));
    assert.equal(await page.locator('.track[data-user-id] .away-band').count(), 1, 'one stretch away');
    assert.match(await page.textContent('#review-notes'), /Sorted it quickly\./);

    // Opened at the end: the final code.
    let r = await review(page);
    assert.equal(r.text, ctx.finalCode);
    // Scrubbing to the start: nothing yet.
    await page.evaluate(() => {
      const s = document.getElementById('scrubber');
      s.value = '0';
      s.dispatchEvent(new Event('input'));
    });
    r = await review(page);
    assert.equal(r.t, r.start);
    assert.equal(r.text, '');

    // The paste marker: just before it the pasted text is not there, a moment after it is.
    const paste = page.locator('.track[data-user-id] .marker[data-kind="paste"]');
    assert.match(await paste.getAttribute('title'), /Cara pasted 37 characters/);
    await paste.click();
    const at = (await review(page)).t;
    const before = await page.evaluate((t) => (window.duetReview.seek(t - 1), window.duetReview.editor.getValue()), at);
    const after = await page.evaluate((t) => (window.duetReview.seek(t + 2000), window.duetReview.editor.getValue()), at);
    assert.ok(!before.includes('sorted(xs)'), before);
    assert.ok(after.includes('return sorted(xs)'), after);
    assert.match(before, /two sum/);

    // The run marker shows the run's output.
    await page.locator('.marker[data-kind="run"]').first().click();
    assert.match(await page.textContent('#review-run-output'), /1,2,3/);

    // Play from the start at 32x: it moves, and reaches the end (idle stretches skipped) long before
    // the interview's own length at that speed would allow without skipping.
    await page.evaluate(() => window.duetReview.seek(window.duetReview.start));
    await page.selectOption('#speed', '32');
    await page.click('#play-btn');
    await page.waitForFunction(() => window.duetReview.t > window.duetReview.start + 50 && window.duetReview.editor.getValue().length > 0);
    assert.equal(await page.getAttribute('#play-btn', 'aria-label'), 'Pause');
    const started = Date.now();
    await page.waitForFunction(() => !window.duetReview.playing, null, { timeout: 60000 });
    r = await review(page);
    assert.equal(r.t, r.end);
    assert.equal(r.text, ctx.finalCode);
    const length = r.end - r.start;
    console.log(`# played ${(length / 1000).toFixed(1)} s of interview at 32x in ${((Date.now() - started) / 1000).toFixed(1)} s`);

    // Download: the export zip, fetched with the token.
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download-btn')]);
    assert.equal(download.suggestedFilename(), `duet-${ctx.code}.zip`);
    const zip = readFileSync(await download.path());
    assert.equal(zip.subarray(0, 2).toString(), 'PK');
    assert.ok(zip.includes(Buffer.from('solution.js')), 'the zip holds the solution');

    await screenshot(page, 'review');
    assert.deepEqual(page.problems, []);
  });

  test('a candidate\'s token gets no record, and the page says the review is for interviewers', async () => {
    const base = server.url;
    const join = await fetch(`${base}/api/session/${ctx.code}/join`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'Mallory' }),
    });
    assert.ok(join.ok, `join: ${join.status}`);
    const { token } = await join.json();
    const res = await fetch(`${base}/api/session/${ctx.code}/record`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(res.status, 403);
    const page = await openPage(browser, null, { ignore: [/status of 403/] });
    await page.goto(`${base}/review/${ctx.code}#token=${token}`);
    await page.waitForSelector('#review-message:not([hidden])');
    assert.match(await page.textContent('#review-message-title'), /for interviewers only/);
    assert.ok(await page.isHidden('#review-main'));
    assert.ok(await page.isHidden('#timeline'));
    assert.equal(await page.evaluate(() => window.duetReview), undefined, 'nothing of the record was loaded');
    // Without any token: told to use the interviewer link.
    const bare = await openPage(browser, null);
    await bare.goto(`${base}/review/${ctx.code}`);
    await bare.waitForSelector('#review-message:not([hidden])');
    assert.match(await bare.textContent('#review-message-title'), /needs the interviewer link/);
    assert.deepEqual(page.problems, []);
    assert.deepEqual(bare.problems, []);
  });

  test('the record and the history are asked for before the bundle has arrived (and without the small script, by the bundle); errors as before', async () => {
    assert.ok(ctx.code, 'the interview was recorded');
    const base = server.url;
    const BUNDLE = /\/static\/review-(?!load-)[^/]*\.js$/;
    const LOADER = /\/static\/review-load-[^/]*\.js$/;
    /** The page's requests for the record and the history (method and URL, with their Authorization). */
    const watch = (page) => {
      const asked = [];
      page.on('request', (r) => {
        if (/\/api\/session\/[^/]+\/(record|history)/.test(r.url())) asked.push({ url: r.url(), auth: r.headers().authorization ?? null });
      });
      return asked;
    };

    // The bundle is held back until the history has been asked for: only the small script can have.
    const early = await openPage(browser, null);
    const asked = watch(early);
    let historyAsked;
    const askedForHistory = new Promise((resolve) => {
      historyAsked = resolve;
    });
    early.on('request', (r) => {
      if (/\/history\?/.test(r.url())) historyAsked();
    });
    let held = false;
    await early.route(BUNDLE, async (route) => {
      held = await Promise.race([askedForHistory.then(() => true), new Promise((r) => setTimeout(() => r(false), 10000))]);
      await route.continue();
    });
    await early.goto(`${base}/review/${ctx.code}#token=${ctx.token}`);
    await early.waitForSelector('body[data-ready="true"]', { timeout: 20000 });
    assert.ok(held, 'the history was asked for while the bundle was still on its way');
    assert.ok(!early.url().includes('token='), 'the token left the address bar');
    assert.equal(await early.evaluate(() => window.duetReview.editor.getValue()), ctx.finalCode);
    assert.deepEqual(
      asked.map((a) => [new URL(a.url).pathname + new URL(a.url).search, a.auth]),
      [
        [`/api/session/${ctx.code}/record`, `Bearer ${ctx.token}`],
        [`/api/session/${ctx.code}/history?doc=code`, `Bearer ${ctx.token}`],
      ],
      'each asked for once, the token in the Authorization header only',
    );
    assert.deepEqual(early.problems, []);

    // Without the small script (it failed to load): the bundle asks itself, and the page works.
    const alone = await openPage(browser, null, { ignore: [/ERR_FAILED/] });
    const askedAlone = watch(alone);
    await alone.route(LOADER, (route) => route.abort());
    await alone.goto(`${base}/review/${ctx.code}#token=${ctx.token}`);
    await alone.waitForSelector('body[data-ready="true"]', { timeout: 20000 });
    assert.equal(await alone.evaluate(() => window.duetReview.editor.getValue()), ctx.finalCode);
    assert.equal(askedAlone.length, 2, JSON.stringify(askedAlone));
    assert.ok(!alone.url().includes('token='), 'the token left the address bar');
    assert.deepEqual(alone.problems, []);

    // An altered token: 401, and the page says the link does not work.
    const altered = `${ctx.token.slice(0, -2)}${ctx.token.endsWith('AA') ? 'BB' : 'AA'}`;
    const bad = await openPage(browser, null, { ignore: [/status of 401/] });
    await bad.goto(`${base}/review/${ctx.code}#token=${altered}`);
    await bad.waitForSelector('#review-message:not([hidden])');
    assert.match(await bad.textContent('#review-message-title'), /This review link does not work/);
    assert.ok(await bad.isHidden('#review-main'));
    assert.equal(await bad.evaluate(() => window.duetReview), undefined);
    assert.deepEqual(bad.problems, []);

    // The interview gone after the page was served (the record answers 404): "Interview not found".
    const gone = await openPage(browser, null, { ignore: [/status of 404/] });
    await gone.route(/\/api\/session\/[^/]+\/record$/, (route) =>
      route.fulfill({ status: 404, contentType: 'application/json', body: JSON.stringify({ error: { code: 'session_not_found', message: 'No such interview.' } }) }),
    );
    await gone.goto(`${base}/review/${ctx.code}#token=${ctx.token}`);
    await gone.waitForSelector('#review-message:not([hidden])');
    assert.match(await gone.textContent('#review-message-title'), /Interview not found/);
    assert.match(await gone.textContent('#review-message-text'), new RegExp(ctx.code));
    assert.deepEqual(gone.problems, []);

    // An unknown code: the server's own 404 page; nothing is asked for.
    const unknown = await openPage(browser, null, { ignore: [/status of 404/] });
    const askedUnknown = watch(unknown);
    const res = await unknown.goto(`${base}/review/ABCDEFGH#token=${ctx.token}`);
    assert.equal(res.status(), 404);
    assert.match(await unknown.textContent('body'), /Interview not found/);
    assert.deepEqual(askedUnknown, []);
    assert.deepEqual(unknown.problems, []);
  });
});
