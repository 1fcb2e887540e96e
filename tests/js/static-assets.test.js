// The real build (frontend/dist, frontend/build.mjs) served by the real all-in-one server
// (target/debug/duet) over real HTTP: every file the pages and workers load is content-named and
// cacheable for a year, its brotli and gzip copies decode to the very bytes of the original and are
// chosen by Accept-Encoding, the pages are revalidated, unknown names are 404, HEAD and ranges work.
// Requests go through node:http, which neither adds Accept-Encoding nor decompresses.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import zlib from 'node:zlib';
import { buildFrontend, DIST, FRONTEND } from './browser/frontend.js';
import { DuetServer } from './browser/duet-server.js';

const IMMUTABLE = 'public, max-age=31536000, immutable';

function request(url, { method = 'GET', headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

function decode(res) {
  const enc = res.headers['content-encoding'];
  if (enc === 'br') return zlib.brotliDecompressSync(res.body);
  if (enc === 'gzip') return zlib.gunzipSync(res.body);
  assert.equal(enc, undefined, `unexpected content-encoding ${enc}`);
  return res.body;
}

function listFiles(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? listFiles(path.join(dir, e.name)) : [path.join(dir, e.name)],
  );
}

describe('the built client as the server sends it', { timeout: 600000 }, () => {
  let server;
  let manifest;

  before(async () => {
    buildFrontend();
    manifest = JSON.parse(readFileSync(path.join(DIST, 'assets.json'), 'utf8'));
    server = await new DuetServer().start();
  });

  after(async () => {
    await server?.close();
  });

  test('the manifest lists every built file and its copies exist', () => {
    const onDisk = listFiles(DIST).map((f) => path.relative(DIST, f).split(path.sep).join('/'));
    const copies = new Set();
    for (const [name, entry] of Object.entries(manifest.files)) {
      assert.ok(onDisk.includes(name), `${name} is on disk`);
      for (const enc of entry.encodings) {
        const copy = `${name}${enc === 'br' ? '.br' : '.gz'}`;
        assert.ok(onDisk.includes(copy), `${copy} is on disk`);
        copies.add(copy);
      }
    }
    const unlisted = onDisk.filter((f) => !(f in manifest.files) && !copies.has(f) && f !== 'assets.json');
    assert.deepEqual(unlisted, []);
    // The big ones are compressed. The standard library is rewritten as a stored zip (with bytecode
    // for the start-up modules) whose brotli copy is smaller than the deflate zip Pyodide ships.
    const pyodide = manifest.urls['pyodide/'].slice(1);
    assert.deepEqual(manifest.files[`${pyodide}pyodide.asm.wasm`].encodings, ['br', 'gzip']);
    assert.deepEqual(manifest.files[manifest.urls['editor.js'].slice(1)].encodings, ['br', 'gzip']);
    assert.deepEqual(manifest.files[`${pyodide}python_stdlib.zip`].encodings, ['br', 'gzip']);
    const shipped = statSync(path.join(FRONTEND, 'node_modules/pyodide/python_stdlib.zip')).size;
    assert.ok(statSync(path.join(DIST, `${pyodide}python_stdlib.zip.br`)).size < shipped);
    // Source maps are for developer tools only: not compressed.
    assert.deepEqual(manifest.files[`${manifest.urls['editor.js'].slice(1)}.map`].encodings, []);
  });

  test('pages name content-named files only; each is immutable and decodes to the original in every encoding', async () => {
    const page = readFileSync(path.join(DIST, 'editor.html'), 'utf8') + readFileSync(path.join(DIST, 'index.html'), 'utf8');
    const fromPages = [...page.matchAll(/"(\/static\/[^"]+)"/g)].map((m) => m[1]);
    assert.ok(fromPages.length >= 4, fromPages.join(' '));
    assert.ok(fromPages.every((u) => !u.includes('?')), 'no query-string versions');
    const pyodide = manifest.urls['pyodide/'];
    const urls = new Set([
      ...fromPages,
      manifest.urls['js-worker.js'],
      manifest.urls['py-worker.js'],
      `${manifest.urls['ace/']}worker-javascript.js`,
      `${pyodide}pyodide.mjs`,
      `${pyodide}pyodide.asm.mjs`,
      `${pyodide}pyodide.asm.wasm`,
      `${pyodide}pyodide-lock.json`,
      `${pyodide}python_stdlib.zip`,
    ]);
    for (const url of urls) {
      const original = readFileSync(path.join(DIST, url));
      const { encodings } = manifest.files[url.slice(1)];
      const asked = [
        ['br', encodings.includes('br') ? 'br' : undefined],
        ['gzip, deflate, br, zstd', encodings.includes('br') ? 'br' : encodings.includes('gzip') ? 'gzip' : undefined],
        ['gzip', encodings.includes('gzip') ? 'gzip' : undefined],
        ['identity', undefined],
        [null, undefined],
      ];
      let type = null;
      for (const [accept, expected] of asked) {
        const res = await request(`${server.url}${url}`, { headers: accept ? { 'accept-encoding': accept } : {} });
        assert.equal(res.status, 200, url);
        assert.equal(res.headers['content-encoding'], expected, `${url} with ${accept}`);
        assert.equal(res.headers['cache-control'], IMMUTABLE, url);
        assert.equal(Number(res.headers['content-length']), res.body.length, url);
        type ??= res.headers['content-type'];
        assert.equal(res.headers['content-type'], type, `${url}: the original's type whatever the encoding`);
        if (encodings.length) assert.equal(res.headers.vary, 'accept-encoding', url);
        assert.ok(decode(res).equals(original), `${url} with ${accept}: decodes to the original bytes`);
      }
    }
  });

  test('content types that browsers are strict about', async () => {
    const pyodide = manifest.urls['pyodide/'];
    const types = {
      [`${pyodide}pyodide.asm.wasm`]: /^application\/wasm$/, // streaming compilation
      [`${pyodide}pyodide.mjs`]: /javascript/, // module scripts
      [manifest.urls['py-worker.js']]: /javascript/,
      [manifest.urls['styles.css']]: /^text\/css/,
    };
    for (const [url, re] of Object.entries(types)) {
      const res = await request(`${server.url}${url}`, { headers: { 'accept-encoding': 'br' } });
      assert.match(res.headers['content-type'], re, url);
      assert.equal(res.headers['x-content-type-options'], 'nosniff', url);
    }
  });

  test('pages are compressed and revalidated on every visit', async () => {
    const created = await (await fetch(`${server.url}/api/session`, { method: 'POST' })).json();
    for (const [url, file] of [
      ['/', 'index.html'],
      [`/interview/${created.session_code}`, 'editor.html'],
      [`/review/${created.session_code}`, 'review.html'],
    ]) {
      const res = await request(`${server.url}${url}`, { headers: { 'accept-encoding': 'gzip, deflate, br, zstd' } });
      assert.equal(res.status, 200, url);
      assert.equal(res.headers['cache-control'], 'no-cache', url);
      assert.equal(res.headers['content-encoding'], 'br', url);
      assert.ok(decode(res).equals(readFileSync(path.join(DIST, file))), url);
      const again = await request(`${server.url}${url}`, {
        headers: { 'accept-encoding': 'gzip, deflate, br, zstd', 'if-none-match': res.headers.etag },
      });
      assert.equal(again.status, 304, `${url} revalidated`);
    }
    // An interview's pages only for an interview that exists.
    for (const url of ['/interview/ZZZZ2222', '/review/ZZZZ2222', '/review/bad']) {
      assert.equal((await request(`${server.url}${url}`)).status, 404, url);
    }
  });

  test('unknown names are 404, never cached', async () => {
    const editor = manifest.urls['editor.js'];
    const stale = editor.replace(/-[A-Z0-9]+\.js$/, '-ZZZZZZZZ.js');
    assert.notEqual(stale, editor);
    for (const url of [stale, '/static/editor.js', '/static/pyodide/0.0.0/pyodide.asm.wasm', `${editor}.br`]) {
      const res = await request(`${server.url}${url}`, { headers: { 'accept-encoding': 'br' } });
      assert.equal(res.status, 404, url);
      assert.equal(res.headers['cache-control'], 'no-store', url);
      assert.equal(JSON.parse(res.body).error.code, 'not_found', url);
    }
  });

  test('HEAD and ranges of the Python runtime', async () => {
    const wasm = `${manifest.urls['pyodide/']}pyodide.asm.wasm`;
    const file = path.join(DIST, wasm);
    const head = await request(`${server.url}${wasm}`, { method: 'HEAD', headers: { 'accept-encoding': 'br' } });
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-encoding'], 'br');
    assert.equal(Number(head.headers['content-length']), statSync(`${file}.br`).size);
    assert.equal(head.body.length, 0);

    const size = statSync(file).size;
    const range = await request(`${server.url}${wasm}`, { headers: { 'accept-encoding': 'br', range: 'bytes=1000-1999' } });
    assert.equal(range.status, 206);
    assert.equal(range.headers['content-encoding'], undefined, 'a range is of the original bytes');
    assert.equal(range.headers['content-range'], `bytes 1000-1999/${size}`);
    assert.ok(range.body.equals(readFileSync(file).subarray(1000, 2000)));
    assert.ok(existsSync(`${file}.gz`));
  });
});
