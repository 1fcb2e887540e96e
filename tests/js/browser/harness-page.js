// Opens the in-page test harness (frontend/test-harness) served next to frontend/dist, with two Ace
// editors bound to two Y.Docs that exchange updates and awareness through an in-page "network" that
// can be held (to make edits concurrent) and flushed.
import { buildFrontend, buildHarness } from './frontend.js';
import { startStaticServer } from './static-server.js';
import { launch, newPage } from './chromium.js';

export async function openHarness() {
  const dist = buildFrontend();
  const harnessDir = await buildHarness();
  const server = await startStaticServer(dist, { mounts: { '/harness/': harnessDir } });
  const browser = await launch();
  const page = await newPage(browser);
  await page.goto(`${server.url}/harness/harness.html`);
  await page.waitForFunction(() => !!window.DuetHarness);
  return {
    server,
    browser,
    page,
    async close() {
      await browser.close();
      await server.close();
    },
  };
}

/** In the page: builds peers a (Alice) and b (Bob) and window.T = {a, b, hold, flush}. */
export function setupPeers(page) {
  return page.evaluate(() => {
    const { Y, awarenessProtocol: ap, createEditor, AceBinding } = window.DuetHarness;
    const queue = [];
    let held = false;
    const flush = () => {
      while (queue.length) queue.shift()();
    };
    const send = (fn) => {
      queue.push(fn);
      if (!held) flush();
    };
    const peer = (id, name, color) => {
      const doc = new Y.Doc();
      const text = doc.getText('code');
      const aw = new ap.Awareness(doc);
      aw.setLocalStateField('user', { name, color });
      const editor = createEditor(document.getElementById(id), { language: 'javascript' });
      const binding = new AceBinding(text, editor, aw, { captureTimeout: 300 });
      return { doc, text, aw, editor, binding };
    };
    const a = peer('ed1', 'Alice', '#e5484d');
    const b = peer('ed2', 'Bob', '#0090ff');
    const link = (from, to) => {
      from.doc.on('update', (u, origin) => {
        if (origin !== 'net') send(() => Y.applyUpdate(to.doc, u, 'net'));
      });
      from.aw.on('update', ({ added, updated, removed }, origin) => {
        if (origin === 'net') return;
        const upd = ap.encodeAwarenessUpdate(from.aw, added.concat(updated, removed));
        send(() => ap.applyAwarenessUpdate(to.aw, upd, 'net'));
      });
    };
    link(a, b);
    link(b, a);
    ap.applyAwarenessUpdate(b.aw, ap.encodeAwarenessUpdate(a.aw, [a.doc.clientID]), 'net');
    ap.applyAwarenessUpdate(a.aw, ap.encodeAwarenessUpdate(b.aw, [b.doc.clientID]), 'net');
    window.T = {
      a,
      b,
      hold: () => {
        held = true;
      },
      flush: () => {
        held = false;
        flush();
      },
    };
  });
}
