// The interviewers' private notes in the browser, against the real all-in-one server (target/debug/duet;
// real headless Chromium driven by playwright-core): two interviewers edit the notes live and see each
// other's cursors; the notes survive a reload and a server crash; notes typed while the server is down
// are saved once it is back; a candidate's page has no notes panel, never subscribes to them, and not
// one byte of them reaches it (every WebSocket frame and long-polling body it receives is recorded);
// after the end the notes are read-only; no console errors.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { launch, screenshot } from './browser/chromium.js';
import { buildFrontend } from './browser/frontend.js';
import { DuetServer } from './browser/duet-server.js';
import { NETWORK_NOISE, focusEnd, openPage, waitSaved } from './browser/scenarios.js';

/** Written into the notes; must never be among the bytes the candidate's page receives. */
const SECRET = 'SECRET-NOTE-7F3Q';

const notesText = (page) => page.evaluate(() => window.duet.notes.ytext.toString());
const notesShown = (page) => page.evaluate(() => window.duet.notes.editor.getValue());
const notesReadOnly = (page) => page.evaluate(() => window.duet.notes.editor.getReadOnly());

async function waitNotes(page, predicate, timeout = 15000) {
  const deadline = Date.now() + timeout;
  let last;
  while (Date.now() < deadline) {
    last = await page.evaluate(() => window.duet?.notes?.ytext.toString() ?? null);
    if (last !== null && predicate(last)) return last;
    await page.waitForTimeout(100);
  }
  throw new Error(`timed out waiting for the notes; last: ${JSON.stringify(last)}`);
}

/** The notes loaded and every notes edit saved (and the code's too). */
async function waitNotesSaved(page, timeout = 20000) {
  await waitSaved(page, timeout);
  await page.waitForSelector('#notes-status[data-state="saved"]', { timeout });
}

/** Focuses the notes editor with the cursor at the end. */
async function focusNotesEnd(page) {
  await page.evaluate(() => {
    window.duet.notes.editor.focus();
    window.duet.notes.editor.navigateFileEnd();
  });
}

/**
 * Records everything Socket.IO carries for a page, both ways: WebSocket frames and the bodies of the
 * long-polling requests and responses (before the upgrade). Binary packets in polling bodies are
 * base64 ('b' + data, Engine.IO v4), so they are decoded: `received` / `sent` hold Buffers.
 */
function recordSocketTraffic(page) {
  const t = { received: [], sent: [] };
  const add = (list, data) => list.push(Buffer.isBuffer(data) ? data : Buffer.from(String(data)));
  const addPolling = (list, body) => {
    for (const packet of body.split('\x1e')) add(list, packet.startsWith('b') ? Buffer.from(packet.slice(1), 'base64') : packet);
  };
  page.on('websocket', (ws) => {
    ws.on('framereceived', (f) => add(t.received, f.payload));
    ws.on('framesent', (f) => add(t.sent, f.payload));
  });
  page.on('request', (req) => {
    if (req.url().includes('/socket.io/') && req.method() === 'POST') addPolling(t.sent, req.postData() ?? '');
  });
  page.on('response', async (res) => {
    if (!res.url().includes('/socket.io/') || res.request().method() !== 'GET') return;
    try {
      addPolling(t.received, (await res.body()).toString('latin1'));
    } catch {
      /* the page went away meanwhile */
    }
  });
  t.contains = (list, needle) => list.some((b) => b.includes(Buffer.from(needle)));
  return t;
}

/** A candidate opens the candidate link and gives a name. */
async function candidateJoins(browser, base, code, name, { beforeGoto } = {}) {
  const page = await openPage(browser, null, { ignore: NETWORK_NOISE });
  beforeGoto?.(page);
  await page.goto(`${base}/interview/${code}`);
  await page.waitForSelector('#name-dialog[open]');
  await page.fill('#name-input', name);
  await page.click('#join-btn');
  return page;
}

describe('the interviewers\' private notes in the browser against the real duet server', { timeout: 600000 }, () => {
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

  test('two interviewers: a notes panel marked private, edited live by both, with each other\'s cursors', async () => {
    const base = server.url;
    const res = await fetch(`${base}/api/session`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ language: 'javascript', title: 'Notes round' }),
    });
    assert.equal(res.status, 201);
    const created = await res.json();
    const code = created.session_code;
    const link = `${base}/interview/${code}#token=${created.interviewer_token}`;

    const ivy = await openPage(browser, null, { ignore: NETWORK_NOISE, name: 'Ivy' });
    ctx.ivyTraffic = recordSocketTraffic(ivy);
    await ivy.goto(link);
    await waitNotesSaved(ivy);
    assert.equal(await ivy.evaluate(() => window.duet.model.role), 'interviewer');
    assert.ok(await ivy.isVisible('#notes-panel'));
    assert.match(await ivy.textContent('#notes-panel'), /Only interviewers see these notes/);
    assert.equal((await ivy.textContent('#notes-panel .private-tag')).trim(), 'private');
    assert.equal(await notesReadOnly(ivy), false);
    assert.match(await ivy.textContent('#notes-status'), /Saved/);

    const ian = await openPage(browser, link, { ignore: NETWORK_NOISE, name: 'Ian' });
    await waitNotesSaved(ian);
    assert.equal(await ian.evaluate(() => window.duet.model.role), 'interviewer');

    await focusNotesEnd(ivy);
    // (Plain lines: Markdown mode continues a list on Enter.)
    await ivy.keyboard.type(`# ${SECRET}\nAsks good questions.\n`);
    await waitNotes(ian, (t) => t.includes('Asks good questions.\n'));
    assert.equal(await notesShown(ian), await notesText(ian), 'Ace shows the shared notes');
    await focusNotesEnd(ian);
    await ian.keyboard.type('Writes tests first.\n');
    const both = await waitNotes(ivy, (t) => t.endsWith('Writes tests first.\n'));
    assert.equal(both, `# ${SECRET}\nAsks good questions.\nWrites tests first.\n`);
    assert.equal(await notesText(ian), both);
    // Each sees the other's cursor in the notes, with the name.
    await ivy.waitForFunction(() => window.duet.notes.binding.remoteCursors().some((c) => c.name === 'Ian'));
    await ian.waitForFunction(() => window.duet.notes.binding.remoteCursors().some((c) => c.name === 'Ivy'));
    // A document of their own: the code is untouched.
    assert.equal(await ivy.evaluate(() => window.duet.ytext.toString()), '');
    await waitNotesSaved(ivy);
    await waitNotesSaved(ian);
    await screenshot(ivy, 'notes-interviewer');
    // Narrow screens stack the panels: the notes editor keeps a usable height.
    await ian.setViewportSize({ width: 700, height: 900 });
    await ian.evaluate(() => document.getElementById('notes-panel').scrollIntoView());
    const box = await ian.locator('#notes-editor').boundingBox();
    assert.ok(box.height >= 200 && box.width >= 600, JSON.stringify(box));
    await screenshot(ian, 'notes-narrow');
    await ian.setViewportSize({ width: 1280, height: 800 });
    Object.assign(ctx, { code, link, ivy, ian });
  });

  test('the notes are stored: after a reload, and after the server crashed and came back', async () => {
    const { ivy, ian } = ctx;
    const notes = await notesText(ivy);
    await ivy.reload();
    await waitNotesSaved(ivy);
    assert.equal(await notesText(ivy), notes);
    assert.equal(await notesShown(ivy), notes);
    // Acked means stored: SIGKILL, start again, reload.
    await server.stop();
    await server.start();
    await ivy.reload();
    await waitNotesSaved(ivy);
    assert.equal(await notesText(ivy), notes);
    await waitNotesSaved(ian);
    assert.equal(await notesText(ian), notes);
  });

  test('notes typed while the server is down: "offline · N unsaved", then saved and seen once it is back', async () => {
    const { ivy, ian } = ctx;
    await server.stop();
    await ivy.waitForSelector('#notes-status:not([data-state="saved"])');
    await focusNotesEnd(ivy);
    await ivy.keyboard.type('An offline thought.\n');
    await ivy.waitForSelector('#notes-status[data-state="offline"]');
    const unsaved = Number(await ivy.getAttribute('#notes-status', 'data-unsaved'));
    assert.ok(unsaved > 0, `unsaved notes edits: ${unsaved}`);
    assert.match(await ivy.textContent('#notes-status'), /Offline · \d+ unsaved edits?/);
    assert.equal(await ivy.getAttribute('#status', 'data-unsaved'), '0', 'the code has nothing unsaved: a state of its own');
    await server.start();
    await waitNotesSaved(ivy, 30000);
    await waitNotes(ian, (t) => t.endsWith('An offline thought.\n'), 30000);
    // Stored, not just relayed.
    await ian.reload();
    await waitNotesSaved(ian);
    assert.ok((await notesText(ian)).endsWith('An offline thought.\n'));
  });

  test('a candidate: no notes panel, no notes subscription, and none of the notes among the bytes the page receives', async () => {
    const { ivy, ian, code } = ctx;
    let traffic;
    const cody = await candidateJoins(browser, server.url, code, 'Cody', {
      beforeGoto: (page) => {
        traffic = recordSocketTraffic(page);
      },
    });
    await waitSaved(cody);
    assert.equal(await cody.evaluate(() => window.duet.model.role), 'candidate');
    assert.equal(await cody.locator('#notes-panel').count(), 0, 'no notes panel in the DOM');
    assert.equal(await cody.evaluate(() => window.duet.notes), null);
    assert.equal(await cody.evaluate(() => window.duet.model.notes), null);
    assert.equal(await cody.evaluate(() => window.duet.connection.notes), null);
    assert.equal(await cody.evaluate(() => window.duet.connection.socket.listeners('notes').length), 0, 'not even listening');
    // Both interviewers keep writing and moving in the notes (updates and awareness) while the candidate
    // is in; the candidate edits the code meanwhile (so its connection is live and receiving). Text is
    // inserted in one piece (as a paste), so each update carries it whole and a leak could not hide in
    // per-keystroke updates.
    const live = `${SECRET}-LIVE, written while the candidate is here.`;
    await ivy.waitForFunction(() => document.querySelectorAll('#participants .participant').length === 3);
    await focusNotesEnd(ian);
    await ian.keyboard.insertText(`${live}\n`);
    await focusNotesEnd(ivy);
    await ivy.keyboard.press('ArrowUp');
    await waitNotes(ivy, (t) => t.includes(live));
    await focusEnd(cody);
    await cody.keyboard.insertText('// hello\n');
    await ivy.waitForFunction(() => window.duet.ytext.toString().includes('// hello'));
    await focusEnd(ivy);
    await ivy.keyboard.insertText('// hi Cody, from the interviewer\n');
    await cody.waitForFunction(() => window.duet.ytext.toString().includes('// hi Cody'));
    await waitNotesSaved(ivy);
    await waitNotesSaved(ian);
    await waitSaved(cody);
    await cody.waitForTimeout(500); // anything more that would arrive arrives now

    const { received, sent } = traffic;
    assert.ok(received.length > 5, `frames recorded: ${received.length}`);
    assert.ok(traffic.contains(received, '// hi Cody, from the interviewer'), 'the recording sees the code updates');
    assert.ok(traffic.contains(received, '"yjs"'), 'and the code\'s events');
    assert.ok(!traffic.contains(received, live), 'not one byte of the notes written while the candidate is in');
    assert.ok(!traffic.contains(received, 'Asks good questions.'), 'nor of the notes written before (which a sync would carry)');
    assert.ok(!traffic.contains(received, SECRET));
    assert.ok(!traffic.contains(received, '"notes"'), 'no `notes` event at all (no sync, update or awareness)');
    assert.ok(!traffic.contains(sent, '"notes"'), 'the candidate never sends `notes`');
    // The same recording on an interviewer's page does see them: these checks can fail.
    const ivyTraffic = ctx.ivyTraffic;
    assert.ok(ivyTraffic.contains(ivyTraffic.received, live), 'the live notes update reached an interviewer whole');
    assert.ok(ivyTraffic.contains(ivyTraffic.received, 'Asks good questions.'), 'the stored notes reached an interviewer in a sync');
    assert.ok(ivyTraffic.contains(ivyTraffic.received, '"notes"'));
    await screenshot(cody, 'notes-candidate-none');
    assert.deepEqual(cody.problems, []);
    ctx.cody = cody;
  });

  test('after the end the notes are read-only for the interviewers; a forced edit is refused and reloaded', async () => {
    const { ivy, ian, code } = ctx;
    await waitNotesSaved(ivy);
    await waitNotesSaved(ian);
    const final = await notesText(ivy);
    await ivy.click('#end-btn');
    await ivy.click('#confirm-ok');
    for (const p of [ivy, ian]) {
      await p.waitForSelector('#lifecycle[data-state="ended"]');
      await p.waitForFunction(() => window.duet.notes.editor.getReadOnly());
      await p.waitForSelector('#notes-ended:not([hidden])');
      assert.equal(await p.getAttribute('#notes-panel', 'data-readonly'), 'true');
      assert.equal(await notesText(p), final, 'the notes stay readable');
    }
    // Typing does nothing.
    await focusNotesEnd(ivy);
    await ivy.keyboard.type('zzz');
    await ivy.waitForTimeout(300);
    assert.equal(await notesText(ivy), final);
    // An edit forced past the read-only editor: the hub refuses it; the page drops it and loads the
    // notes again (a fresh document), and the other interviewer never sees it.
    const oldClient = await ivy.evaluate(() => window.duet.notes.doc.clientID);
    await ivy.evaluate(() => window.duet.model.notes.doc.getText('notes').insert(0, 'AFTER THE END '));
    await ivy.waitForFunction(() => /notes edit was not saved: the interview has ended/.test(document.getElementById('activity').textContent));
    await waitNotes(ivy, (t) => t === final);
    assert.equal(await notesShown(ivy), final, 'Ace shows the stored notes again');
    assert.notEqual(await ivy.evaluate(() => window.duet.notes.doc.clientID), oldClient, 'a fresh document');
    await ivy.waitForSelector('#notes-status[data-state="saved"]');
    assert.equal(await notesReadOnly(ivy), true, 'still read-only');
    await ian.waitForTimeout(300);
    assert.equal(await notesText(ian), final, 'the other interviewer never saw it');
    // Opened after the end: read-only with the final notes.
    await ian.reload();
    await ian.waitForSelector('#lifecycle[data-state="ended"]');
    await waitNotes(ian, (t) => t === final);
    await ian.waitForSelector('#notes-status[data-state="saved"]');
    assert.equal(await notesReadOnly(ian), true);
    await screenshot(ivy, 'notes-ended');
    const rest = await (await fetch(`${server.url}/api/session/${code}`)).json();
    assert.equal(rest.notes, undefined, 'the notes are not in the public REST answer');
  });

  test('no console errors on the interviewers\' and the candidate\'s pages', () => {
    assert.deepEqual(ctx.ivy.problems, []);
    assert.deepEqual(ctx.ian.problems, []);
    assert.deepEqual(ctx.cody.problems, []);
  });
});
