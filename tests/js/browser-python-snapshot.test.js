// The Python runner's start-up snapshot (frontend/src/runners/py-worker.js) in real Chromium: the first
// load starts Python and keeps a snapshot (and the decoded runtime files) in Cache Storage; a later
// worker restores it and behaves like a freshly started one; a damaged snapshot is thrown away and
// Python starts normally; other builds' entries are removed.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { openHarness } from './browser/harness-page.js';

const CACHE = 'duet-python';

describe('Python start-up snapshot (in-page)', { timeout: 300000 }, () => {
  let h;
  let page;

  before(async () => {
    h = await openHarness();
    page = h.page;
  });

  after(async () => {
    await h?.close();
  });

  /**
   * A new runner (a new worker): its load report and the results of `programs`, run in order. The
   * previous runner's worker is ended first (not at the end of its own runs: it may still be keeping
   * its snapshot).
   */
  const freshRunner = (programs) =>
    page.evaluate(async (codes) => {
      window.lastRunner?._kill();
      let ready = null;
      const runner = new window.DuetHarness.PythonRunner({
        onLoadProgress: (p) => {
          if (p.phase === 'ready') ready = p;
        },
      });
      window.lastRunner = runner;
      const results = [];
      for (const code of codes) results.push(await runner.run(code));
      return { ready, results };
    }, programs);

  const cacheKeys = () =>
    page.evaluate(async (name) => ((await caches.has(name)) ? (await (await caches.open(name)).keys()).map((r) => r.url) : []), CACHE);
  const snapshotKeys = async () => (await cacheKeys()).filter((k) => k.includes('/snapshot?'));

  const waitForSnapshot = async () => {
    for (let i = 0; i < 300; i++) {
      const keys = await snapshotKeys();
      if (keys.length) return keys;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error('no snapshot was kept');
  };

  const PROGRAMS = [
    'counter = 41\nprint(counter + 1)',
    // A restored interpreter starts clean: nothing of an earlier run, the same input() guard.
    'print("counter" in globals())\nimport json, sys\nprint(json.dumps({"v": sys.version_info[:2]}))',
    'input()',
    'def f():\n    return 1 / 0\nf()',
  ];

  function assertBehaves(results) {
    assert.equal(results[0].output, '42\n');
    assert.equal(results[1].status, 'ok');
    assert.match(results[1].output, /^False\n\{"v": \[3, \d+\]\}\n$/);
    assert.equal(results[2].status, 'error');
    assert.match(results[2].output, /input\(\) is not available here/);
    assert.equal(results[3].status, 'error');
    assert.match(results[3].output, /File "main\.py", line 2, in f\n/);
    assert.match(results[3].output, /ZeroDivisionError: division by zero/);
  }

  test('the first load starts Python and keeps a snapshot; the next worker restores it and behaves the same', async () => {
    assert.deepEqual(await snapshotKeys(), []);
    const first = await freshRunner(PROGRAMS);
    assert.equal(first.ready.restored, false);
    assertBehaves(first.results);
    const keys = await waitForSnapshot();
    assert.equal(keys.length, 1);
    assert.match(keys[0], /\/static\/pyodide\/[^/]+\/snapshot\?worker=/);
    const dir = keys[0].slice(0, keys[0].indexOf('snapshot?'));
    // The decoded runtime files are kept beside it; each is written once its download has been read
    // through, which may finish after the snapshot is written.
    const expected = [`${dir}pyodide.asm.wasm`, `${dir}python_stdlib.zip`, keys[0]].sort();
    let all = [];
    for (let i = 0; i < 300; i++) {
      all = (await cacheKeys()).sort();
      if (all.length >= expected.length) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.deepEqual(all, expected);

    const second = await freshRunner(PROGRAMS);
    assert.equal(second.ready.restored, true, 'the second worker restored the snapshot');
    assertBehaves(second.results);
  });

  test('a damaged snapshot is thrown away: Python starts normally and a good one is kept again', async () => {
    const [key] = await waitForSnapshot();
    await page.evaluate(
      async ([name, url]) => {
        const cache = await caches.open(name);
        await cache.put(url, new Response(new Uint8Array(64 * 1024).fill(7)));
      },
      [CACHE, key],
    );
    const damaged = await freshRunner(PROGRAMS);
    assert.equal(damaged.ready.restored, false);
    assertBehaves(damaged.results);

    await waitForSnapshot();
    const restored = await freshRunner(PROGRAMS);
    assert.equal(restored.ready.restored, true);
    assertBehaves(restored.results);
  });

  test('entries of other builds are removed when a new snapshot is kept', async () => {
    const [key] = await waitForSnapshot();
    const current = await cacheKeys();
    const staleSnapshot = key.replace(/worker=[^&]+/, 'worker=%2Fstatic%2Fpy-worker-OLDBUILD.js');
    const staleRuntime = new URL('/static/pyodide/0.0.0-0123456789/pyodide.asm.wasm', key).href;
    await page.evaluate(
      async ([name, stale, snapshot]) => {
        const cache = await caches.open(name);
        for (const url of stale) await cache.put(url, new Response('old'));
        await cache.delete(snapshot); // the current build has none: the next load makes one
      },
      [CACHE, [staleSnapshot, staleRuntime], key],
    );
    const fresh = await freshRunner(PROGRAMS.slice(0, 1));
    assert.equal(fresh.ready.restored, false);
    await waitForSnapshot();
    for (let i = 0; i < 300 && (await cacheKeys()).includes(staleRuntime); i++) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual((await cacheKeys()).sort(), current.sort());
  });
});
