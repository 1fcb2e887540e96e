// The in-browser code runners in real Chromium, without a server: JavaScript in a Web Worker,
// Python through Pyodide (served from frontend/dist/static/pyodide, no CDN) in a module worker, and
// HTML in a sandboxed iframe that cannot reach its parent.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { openHarness } from './browser/harness-page.js';

describe('code runners (in-page)', { timeout: 240000 }, () => {
  let h;
  let page;
  const requests = [];

  before(async () => {
    h = await openHarness();
    page = h.page;
    page.on('request', (r) => requests.push(r.url()));
  });

  after(async () => {
    await h?.close();
  });

  const runJs = (code, timeLimitMs = 5000) =>
    page.evaluate(
      async ([c, t]) => {
        const r = new window.DuetHarness.JsRunner({ timeLimitMs: t });
        const chunks = [];
        const res = await r.run(c, { onOutput: (o) => chunks.push(o) });
        return { ...res, chunks };
      },
      [code, timeLimitMs],
    );

  test('JavaScript: console output is captured, Node-style', async () => {
    const r = await runJs(
      'console.log("hello", 1 + 1, {a: [1, "x"]}, new Map([["k", 2]]));\nconsole.error("oops");\nconsole.log("%s is %d", "x", 42);',
    );
    assert.equal(r.status, 'ok');
    assert.equal(r.output, "hello 2 { a: [ 1, 'x' ] } Map(1) { 'k' => 2 }\noops\nx is 42\n");
    assert.deepEqual(
      r.chunks.map((c) => c.stream),
      ['stdout', 'stderr', 'stdout'],
    );
    assert.equal(typeof r.duration_ms, 'number');
  });

  test('JavaScript: a thrown error is reported with its line', async () => {
    const r = await runJs('const x = 1;\nfunction f() { throw new TypeError("boom"); }\nf();');
    assert.equal(r.status, 'error');
    assert.match(r.output, /^TypeError: boom/);
    assert.match(r.output, /main\.js:2:/);
    const syntax = await runJs('let = ;');
    assert.equal(syntax.status, 'error');
    assert.match(syntax.output, /SyntaxError/);
    const rejected = await runJs('console.log("before");\nPromise.reject(new Error("nope"));');
    assert.equal(rejected.status, 'error');
    assert.match(rejected.output, /^before\nError: nope\n {4}at main\.js:2:16/);
    const inTimer = await runJs('setTimeout(() => { null.x; }, 10);');
    assert.equal(inTimer.status, 'error');
    assert.match(inTimer.output, /TypeError: Cannot read properties of null[^\n]*\n {4}at main\.js:1:25/);
  });

  test('JavaScript: top-level await and timers finish before the run ends', async () => {
    const r = await runJs(
      'setTimeout(() => console.log("timer"), 30);\nawait new Promise((r) => setTimeout(r, 10));\nconsole.log("awaited");\nPromise.resolve().then(() => console.log("micro"));',
    );
    assert.equal(r.status, 'ok');
    assert.equal(r.output, 'awaited\nmicro\ntimer\n');
  });

  test('JavaScript: an infinite loop is stopped by the time limit, and Stop works', async () => {
    const started = Date.now();
    const r = await runJs('let i = 0; while (true) { i++; }', 1000);
    assert.equal(r.status, 'timeout');
    assert.match(r.output, /time limit/);
    assert.ok(Date.now() - started < 4000);
    const stopped = await page.evaluate(async () => {
      const runner = new window.DuetHarness.JsRunner({ timeLimitMs: 10000 });
      const p = runner.run('console.log("start"); for (;;) {}');
      await new Promise((r) => setTimeout(r, 200));
      runner.stop();
      return p;
    });
    assert.equal(stopped.status, 'error');
    assert.match(stopped.output, /^start\n\[stopped\]/);
  });

  test('HTML: rendered in a sandboxed iframe that cannot reach the parent page', async () => {
    const r = await page.evaluate(async () => {
      window.secretOfTheParent = 'do not leak';
      const runner = new window.DuetHarness.HtmlRunner({ container: document.getElementById('frames') });
      return runner.run(`<!doctype html><html><head><style>h1{color:rgb(200,0,0)}</style></head><body>
<h1 id="t">Hello from HTML</h1>
<script>
  try { console.log('parent title: ' + parent.document.title); } catch (e) { console.log('parent.document blocked: ' + e.name); }
  try { console.log('secret: ' + parent.secretOfTheParent); } catch (e) { console.log('parent globals blocked: ' + e.name); }
  try { localStorage.setItem('x', '1'); console.log('storage allowed'); } catch (e) { console.log('storage blocked: ' + e.name); }
  console.error('an error line');
</script></body></html>`);
    });
    assert.equal(r.status, 'error', 'console.error marks the run');
    assert.match(r.output, /parent\.document blocked: SecurityError/);
    assert.match(r.output, /parent globals blocked: SecurityError/);
    assert.match(r.output, /storage blocked: SecurityError/);
    assert.match(r.output, /an error line/);
    assert.doesNotMatch(r.output, /do not leak/);
    const sandbox = await page.getAttribute('#frames iframe', 'sandbox');
    assert.equal(sandbox, 'allow-scripts');
    const frame = page.frames().find((f) => f !== page.mainFrame());
    assert.equal(await frame.textContent('#t'), 'Hello from HTML');
    assert.equal(await frame.evaluate(() => getComputedStyle(document.getElementById('t')).color), 'rgb(200, 0, 0)');
    assert.equal(await frame.evaluate(() => document.compatMode), 'CSS1Compat', 'the doctype still comes first');
    assert.equal(await frame.evaluate(() => window.origin), 'null', 'opaque origin');
  });

  test('Python: print, an exception with a clean traceback, an infinite loop stopped by the time limit', async () => {
    const result = await page.evaluate(async () => {
      const progress = [];
      const runner = new window.DuetHarness.PythonRunner({ timeLimitMs: 3000, onLoadProgress: (p) => progress.push(p) });
      window.py = runner;
      const hello = await runner.run('import sys\nprint("hello from", "python")\nprint(sum(range(10)))\nprint("to stderr", file=sys.stderr)');
      const fail = await runner.run('x = 1\ny = x / 0\n');
      const loop = await runner.run('print("spinning")\nwhile True:\n    pass\n');
      const again = await runner.run('print("back after the timeout")');
      return { hello, fail, loop, again, progress };
    });
    assert.equal(result.hello.status, 'ok', result.hello.output);
    assert.equal(result.hello.output, 'hello from python\n45\nto stderr\n');
    assert.equal(result.fail.status, 'error');
    assert.match(result.fail.output, /Traceback \(most recent call last\):\n {2}File "main\.py", line 2, in <module>/);
    assert.match(result.fail.output, /ZeroDivisionError: division by zero/);
    assert.doesNotMatch(result.fail.output, /_pyodide/, 'Pyodide internals trimmed from the traceback');
    assert.equal(result.loop.status, 'timeout');
    assert.match(result.loop.output, /spinning\n[\s\S]*time limit/);
    assert.equal(result.again.status, 'ok', 'a new worker replaced the terminated one');
    assert.equal(result.again.output, 'back after the timeout\n');
    const loading = result.progress.filter((p) => p.phase === 'loading' && p.total > 0);
    assert.ok(loading.length > 2, 'download progress was reported');
    assert.ok(loading.some((p) => p.loaded === p.total), 'progress reached 100%');
    assert.ok(result.progress.some((p) => p.phase === 'ready'));
    // The runtime came from this server, not a CDN.
    const pyodideFiles = requests.filter((u) => /pyodide|python_stdlib/.test(u));
    assert.ok(pyodideFiles.length >= 4);
    assert.ok(pyodideFiles.every((u) => u.startsWith(h.server.url)), pyodideFiles.join('\n'));
  });

  test('no console errors, no requests leave the page’s origin', () => {
    assert.deepEqual(page.problems, []);
    const foreign = requests.filter((u) => !u.startsWith(h.server.url) && !u.startsWith('data:') && !u.startsWith('blob:') && !u.startsWith('about:'));
    assert.deepEqual(foreign, []);
  });
});
