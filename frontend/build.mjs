// Builds Duet's browser client into frontend/dist/ (nothing built is committed).
//
//   dist/index.html            landing page, served at /
//   dist/editor.html           editor page, served at /interview/<CODE>
//   dist/preview.html          the HTML runner's sandboxed preview, served at /preview
//   dist/review.html           the review page (replay of a past interview), served at /review/<CODE>;
//                              its small review-load script asks for the record and the history first
//   dist/static/...            everything else, referenced as /static/...
//   dist/assets.json           the manifest: which files the server may serve, which of them are named
//                              by their content (cached for a year), which compressed copies exist
//
// Every file a page or a worker loads has a name that changes when its content does: the bundles and
// the favicon carry a content hash (editor-5GHXQ2ZL.js), Ace's files sit under their package's version
// (static/ace/1.45.2/…; npm never changes a published version) and Pyodide's under its version and a
// hash of the directory (static/pyodide/314.0.7-0123456789/…). So the server can
// let browsers keep them for a year without asking again, and an upgrade is picked up at once because
// the pages (never cached without asking) name the new files.
//
// Every text-like file also gets a brotli (.br) and a gzip (.gz) copy, made here at the highest levels
// because it is done once per content and served many times: compressing Pyodide's 9.6 MB .wasm with
// brotli 11 takes about two minutes, so compressed copies are kept in frontend/.cache/precompressed/,
// keyed by content, and a later build only compresses what changed.
//
// Usage: node build.mjs [--dev] [--watch]
//   --dev    no minification and no compressed copies (source maps are always written)
//   --watch  rebuild bundles on change (implies --dev; plain, unhashed bundle names, so the pages and
//            the manifest stay valid across rebuilds and the server revalidates every request)
//
// Also exports buildHarness(outdir) for the browser tests (tests/js/browser-*.test.js): a bundle that
// exposes the Ace–Yjs binding and the code runners to a test page, never part of dist/.
import * as esbuild from 'esbuild';
import { createHash } from 'node:crypto';
import { cp, mkdir, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import zlib from 'node:zlib';

const here = path.dirname(fileURLToPath(import.meta.url));
const src = path.join(here, 'src');
const dist = path.join(here, 'dist');
const staticDir = path.join(dist, 'static');
const nm = path.join(here, 'node_modules');
const cacheRoot = path.join(here, '.cache');
const cacheDir = path.join(cacheRoot, 'precompressed');
const stdlibCacheDir = path.join(cacheRoot, 'python-stdlib');

/** The manifest the server reads (services/gateway/src/assets.rs); `version` changes if its shape does. */
const MANIFEST = 'assets.json';
const MANIFEST_VERSION = 1;

// The Pyodide runtime files the Python runner needs (pyodide 314.x ships pyodide.asm.mjs, older
// releases pyodide.asm.js: whichever exists is copied).
const PYODIDE_FILES = [
  'pyodide.mjs',
  'pyodide.js',
  'pyodide.asm.mjs',
  'pyodide.asm.js',
  'pyodide.asm.wasm',
  'python_stdlib.zip',
  'pyodide-lock.json',
];
/**
 * Python's standard library as the worker loads it. Pyodide ships it as a deflate zip of .py sources,
 * so every module Python imports while starting is compiled from source in the browser, which is
 * most of the seconds Python takes to start. The build rewrites the zip (once per Pyodide version,
 * cached): entries stored uncompressed (brotli over HTTP then compresses across files: a smaller
 * download than the per-file deflate), plus bytecode (.pyc, unchecked hash-based, compiled by this
 * very Pyodide in Node) beside the source of each module imported at start-up and of the modules
 * below. The sources stay, for tracebacks and inspect.
 */
const PYTHON_STDLIB = 'python_stdlib.zip';
/** Modules interview code often imports, compiled ahead like the start-up ones. */
const PRECOMPILED_MODULES = [
  'bisect', 'collections', 'copy', 'dataclasses', 'datetime', 'decimal', 'fractions', 'functools', 'heapq',
  'json', 'pprint', 'random', 're', 'statistics', 'string', 'textwrap', 'typing',
];
/** Part of the rewritten zip's cache key: bump when STDLIB_SCRIPT changes what it writes. */
const STDLIB_RECIPE = 1;
// Runs inside Pyodide (Node) with PRECOMPILE (module names) set; writes /tmp/stdlib.zip.
const STDLIB_SCRIPT = `
import sys, zipfile, importlib.util, importlib._bootstrap_external as bootstrap
ZIP = next(p for p in sys.path if p.endswith('.zip'))

def from_zip(modules):
    found = set()
    for m in modules:
        origin = getattr(getattr(m, '__spec__', None), 'origin', None) or ''
        if origin.startswith(ZIP + '/') and origin.endswith('.py'):
            found.add(origin[len(ZIP) + 1:])
    return found

wanted = from_zip(list(sys.modules.values()))
for name in PRECOMPILE:
    __import__(name)
wanted |= from_zip(list(sys.modules.values()))

source = zipfile.ZipFile(ZIP)
with zipfile.ZipFile('/tmp/stdlib.zip', 'w', zipfile.ZIP_STORED) as out:
    for info in source.infolist():
        data = source.read(info.filename)
        out.writestr(zipfile.ZipInfo(info.filename, info.date_time), data)
        if info.filename in wanted:
            # The file name a source import gives the code, so tracebacks read the source.
            code = compile(data, ZIP + '/' + info.filename, 'exec', dont_inherit=True)
            pyc = bootstrap._code_to_hash_pyc(code, importlib.util.source_hash(data), False)
            out.writestr(zipfile.ZipInfo(info.filename + 'c', info.date_time), pyc)
len(wanted)
`;
// Ace files loaded at run time (modes and themes are bundled into editor.js).
const ACE_FILES = ['worker-javascript.js', 'worker-html.js', 'worker-css.js', 'ext-searchbox.js'];

/** Brotli at its highest quality and a 16 MiB window (the largest browsers must accept). */
const BROTLI_OPTIONS = {
  params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 11, [zlib.constants.BROTLI_PARAM_LGWIN]: 24 },
};
const GZIP_OPTIONS = { level: 9 };
/** The compressed copies, by Content-Encoding name; the part of the cache key that says how. */
const ENCODINGS = [
  { name: 'br', ext: '.br', tag: 'q11w24', compress: promisify(zlib.brotliCompress), options: BROTLI_OPTIONS },
  { name: 'gzip', ext: '.gz', tag: 'l9', compress: promisify(zlib.gzip), options: GZIP_OPTIONS },
];
/** Smaller than this, a response fits in a packet or two whether compressed or not. */
const COMPRESS_MIN_BYTES = 1024;
/** A compressed copy is kept only if it is at most this fraction of the original. */
const MAX_COMPRESSED_RATIO = 0.9;
/**
 * Not compressed: formats that are compressed already (python_stdlib.zip shrinks by 2% with brotli),
 * and source maps, which only developer tools fetch (editor's 2.7 MB map would add ~10 s of brotli to
 * every build).
 */
const NOT_COMPRESSED = new Set(['.zip', '.gz', '.br', '.png', '.jpg', '.jpeg', '.gif', '.webp', '.avif', '.woff2', '.map']);
/** Cached compressed copies unused for this long are deleted at the end of a build. */
const CACHE_MAX_AGE_MS = 30 * 24 * 3600 * 1000;

async function exists(p) {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

async function packageVersion(name) {
  return JSON.parse(await readFile(path.join(nm, name, 'package.json'), 'utf8')).version;
}

/** Sizes of the two big runtime files as served (decoded), for the Python worker's progress bar. */
async function pyodideSizes(dir) {
  const sizes = {};
  for (const f of ['pyodide.asm.wasm', PYTHON_STDLIB]) sizes[f] = (await stat(path.join(dir, f))).size;
  return sizes;
}

/** The rewritten standard library (see PYTHON_STDLIB), from the cache or made now. */
async function pythonStdlib() {
  const original = await readFile(path.join(nm, 'pyodide', PYTHON_STDLIB));
  const key = sha256(`${sha256(original)} ${STDLIB_RECIPE} ${PRECOMPILED_MODULES.join(',')}`);
  const cached = path.join(stdlibCacheDir, `${key}.zip`);
  try {
    const hit = await readFile(cached);
    const now = new Date();
    await utimes(cached, now, now);
    return hit;
  } catch {
    /* made below */
  }
  const started = Date.now();
  const { loadPyodide } = await import(pathToFileURL(path.join(nm, 'pyodide', 'pyodide.mjs')).href);
  const py = await loadPyodide({ indexURL: `${path.join(nm, 'pyodide')}${path.sep}`, stdout: () => {}, stderr: () => {} });
  py.globals.set('PRECOMPILE', py.toPy(PRECOMPILED_MODULES));
  const compiled = py.runPython(STDLIB_SCRIPT);
  const out = Buffer.from(py.FS.readFile('/tmp/stdlib.zip'));
  await mkdir(stdlibCacheDir, { recursive: true });
  const tmp = `${cached}.${process.pid}.tmp`;
  await writeFile(tmp, out);
  await rename(tmp, cached);
  console.log(`${PYTHON_STDLIB}: ${compiled} modules precompiled, entries stored, in ${Date.now() - started} ms (cached)`);
  return out;
}

function sha256(buf) {
  return createHash('sha256').update(buf).digest('hex');
}

/** `/static/…` URL of a file under dist/static. */
function staticUrl(file) {
  return `/static/${path.relative(staticDir, file).split(path.sep).join('/')}`;
}

/**
 * What one build produced: `urls` maps each file's plain name (as the sources write it, e.g.
 * `editor.js`, `pyodide/`) to the URL it is served at; `immutable` holds the dist-relative paths of
 * the files named by their content.
 */
class Outputs {
  constructor() {
    this.urls = {};
    this.immutable = new Set();
    /** Files whose type is usually compressed already but which the build wrote uncompressed. */
    this.compressAnyway = new Set();
    this.pyodideSizes = {};
  }

  add(plainName, file, { immutable }) {
    this.urls[plainName] = staticUrl(file);
    if (immutable) this.immutable.add(path.relative(dist, file).split(path.sep).join('/'));
  }

  /** Marks every file under `dir` immutable (a versioned directory). */
  async addTree(plainName, dir) {
    this.urls[plainName] = `${staticUrl(dir)}/`;
    for (const f of await listFiles(dir)) this.immutable.add(path.relative(dist, f).split(path.sep).join('/'));
  }
}

async function listFiles(dir) {
  const out = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await listFiles(p)));
    else if (e.isFile()) out.push(p);
  }
  return out.sort();
}

function commonOptions(dev) {
  return {
    bundle: true,
    minify: !dev,
    sourcemap: 'linked',
    target: ['chrome109', 'firefox115', 'safari16'],
    logLevel: 'warning',
    legalComments: 'linked',
  };
}

/**
 * The three esbuild stages, in order: the workers, then the page bundles (which need the workers'
 * URLs), then the styles. `urls` is filled as stages complete.
 */
function bundleStages({ dev, hashed, urls, sizes }) {
  const base = { ...commonOptions(dev), outdir: staticDir, metafile: true, entryNames: hashed ? '[name]-[hash]' : '[name]' };
  return [
    () => [
      { ...base, entryPoints: { 'js-worker': path.join(src, 'runners/js-worker.js') }, format: 'iife' },
      {
        // Pyodide 0.28+ refuses classic workers: the Python worker is a module worker.
        ...base,
        entryPoints: { 'py-worker': path.join(src, 'runners/py-worker.js') },
        format: 'esm',
        define: { __PYODIDE_SIZES__: JSON.stringify(sizes), __PYODIDE_URL__: JSON.stringify(urls['pyodide/']) },
      },
    ],
    () => [
      {
        ...base,
        entryPoints: {
          landing: path.join(src, 'pages/landing.js'),
          editor: path.join(src, 'pages/editor.js'),
          review: path.join(src, 'pages/review.js'),
          // The review page's requests, started before its bundle has arrived (pages/review-load.js).
          'review-load': path.join(src, 'pages/review-load.js'),
        },
        format: 'iife',
        define: { __DUET_ASSETS__: JSON.stringify(assetsDefine(urls)) },
      },
    ],
    () => [{ ...base, entryPoints: { styles: path.join(src, 'styles.css') }, loader: { '.svg': 'dataurl' } }],
  ];
}

/** What src/assets.js reads: the run-time URLs of the workers and of Ace's files. */
function assetsDefine(urls) {
  return { jsWorker: urls['js-worker.js'], pyWorker: urls['py-worker.js'], aceBase: urls['ace/'] };
}

/** Records the bundles of one esbuild result (entry points; their maps and licence notes are not content-named). */
function recordBundles(result, outputs, hashed) {
  for (const [out, info] of Object.entries(result.metafile.outputs)) {
    if (!info.entryPoint) continue;
    const file = path.resolve(here, out);
    const plain = `${path.basename(info.entryPoint, path.extname(info.entryPoint))}${path.extname(out)}`;
    outputs.add(plain, file, { immutable: hashed });
  }
}

/** A short hash of every file's name and content under `dir`. */
async function treeHash(dir) {
  const h = createHash('sha256');
  for (const f of await listFiles(dir)) h.update(`${path.relative(dir, f)}\0${sha256(await readFile(f))}\n`);
  return h.digest('hex').slice(0, 10);
}

async function copyRuntime(outputs, hashed) {
  // Pyodide's directory is named by version and content (static/pyodide/314.0.7-<hash>/): what the
  // build puts there is not only the npm package's bytes, and a Python start-up snapshot the worker
  // keeps in the browser is only valid with the very same files.
  const staging = path.join(staticDir, 'pyodide', 'staging');
  await mkdir(staging, { recursive: true });
  for (const f of PYODIDE_FILES) {
    const from = path.join(nm, 'pyodide', f);
    if (f === PYTHON_STDLIB) await writeFile(path.join(staging, f), await pythonStdlib());
    else if (await exists(from)) await cp(from, path.join(staging, f));
  }
  const pyodideDir = path.join(staticDir, 'pyodide', `${await packageVersion('pyodide')}-${await treeHash(staging)}`);
  await rename(staging, pyodideDir);
  await outputs.addTree('pyodide/', pyodideDir);
  outputs.pyodideSizes = await pyodideSizes(pyodideDir);
  outputs.compressAnyway.add(path.relative(dist, path.join(pyodideDir, PYTHON_STDLIB)).split(path.sep).join('/'));

  const aceDir = path.join(staticDir, 'ace', await packageVersion('ace-builds'));
  await mkdir(aceDir, { recursive: true });
  for (const f of ACE_FILES) await cp(path.join(nm, 'ace-builds/src-min-noconflict', f), path.join(aceDir, f));
  await outputs.addTree('ace/', aceDir);

  const favicon = await readFile(path.join(src, 'favicon.svg'));
  const faviconFile = path.join(staticDir, hashed ? `favicon-${sha256(favicon).slice(0, 10)}.svg` : 'favicon.svg');
  await writeFile(faviconFile, favicon);
  outputs.add('favicon.svg', faviconFile, { immutable: hashed });
}

/** Rewrites `/static/<plain name>` references in an HTML page to the built URLs; unknown names fail the build. */
export function rewriteStaticRefs(html, urls, page) {
  return html.replace(/(["'])\/static\/([\w./-]+)\1/g, (_, q, name) => {
    const url = urls[name];
    if (!url) throw new Error(`${page} references /static/${name}, which the build does not produce`);
    return `${q}${url}${q}`;
  });
}

async function writePages(urls) {
  for (const page of ['index.html', 'editor.html', 'preview.html', 'review.html']) {
    const html = await readFile(path.join(src, page), 'utf8');
    await writeFile(path.join(dist, page), rewriteStaticRefs(html, urls, page));
  }
}

function compressible(file, size, compressAnyway) {
  if (size < COMPRESS_MIN_BYTES || file.endsWith('.LEGAL.txt')) return false;
  return compressAnyway.has(path.relative(dist, file).split(path.sep).join('/')) || !NOT_COMPRESSED.has(path.extname(file));
}

/** Compressed copy of `buf` by `enc`, from the cache when this content was compressed before. */
async function compressCached(buf, hash, enc) {
  const key = path.join(cacheDir, `${hash}.${enc.tag}${enc.ext}`);
  try {
    const hit = await readFile(key);
    const now = new Date();
    await utimes(key, now, now); // recently used: kept by the clean-up below
    return hit;
  } catch {
    /* not cached yet */
  }
  const out = await enc.compress(buf, enc.options);
  const tmp = `${key}.${process.pid}.tmp`;
  await writeFile(tmp, out);
  await rename(tmp, key); // atomic: a concurrent build never reads half a file
  return out;
}

async function pruneCache() {
  const now = Date.now();
  for (const dir of [cacheDir, stdlibCacheDir]) {
    for (const f of await readdir(dir).catch(() => [])) {
      const p = path.join(dir, f);
      const s = await stat(p).catch(() => null);
      if (s && now - s.mtimeMs > CACHE_MAX_AGE_MS) await rm(p, { force: true });
    }
  }
}

/**
 * Writes the .br and .gz copies worth having next to their originals; returns the encodings written
 * per dist-relative path. The copies are made in parallel (zlib works on libuv's thread pool).
 */
async function precompress(files, compressAnyway) {
  await mkdir(cacheDir, { recursive: true });
  const encodings = {};
  await Promise.all(
    files.map(async (file) => {
      const rel = path.relative(dist, file).split(path.sep).join('/');
      encodings[rel] = [];
      const buf = await readFile(file);
      if (!compressible(file, buf.length, compressAnyway)) return;
      const hash = sha256(buf);
      for (const enc of ENCODINGS) {
        const out = await compressCached(buf, hash, enc);
        if (out.length <= buf.length * MAX_COMPRESSED_RATIO) {
          await writeFile(file + enc.ext, out);
          encodings[rel].push(enc.name);
        }
      }
    }),
  );
  await pruneCache();
  return encodings;
}

/** The manifest: every servable file (dist-relative), whether it is content-named, its compressed copies. */
async function writeManifest(outputs, compress) {
  const all = await listFiles(dist);
  const encodings = compress ? await precompress(all, outputs.compressAnyway) : {};
  const files = {};
  for (const file of all) {
    const rel = path.relative(dist, file).split(path.sep).join('/');
    files[rel] = { immutable: outputs.immutable.has(rel), encodings: encodings[rel] ?? [] };
  }
  const manifest = { version: MANIFEST_VERSION, urls: outputs.urls, files };
  await writeFile(path.join(dist, MANIFEST), `${JSON.stringify(manifest, null, 1)}\n`);
  return manifest;
}

async function buildInto({ dev, hashed, compress }) {
  await rm(dist, { recursive: true, force: true });
  await mkdir(staticDir, { recursive: true });
  const outputs = new Outputs();
  await copyRuntime(outputs, hashed);
  for (const stage of bundleStages({ dev, hashed, urls: outputs.urls, sizes: outputs.pyodideSizes })) {
    for (const opts of stage()) recordBundles(await esbuild.build(opts), outputs, hashed);
  }
  await writePages(outputs.urls);
  return { manifest: await writeManifest(outputs, compress), outputs };
}

/** Builds dist/; returns the manifest. */
export async function build({ dev = false } = {}) {
  return (await buildInto({ dev, hashed: true, compress: !dev })).manifest;
}

/** The manifest of the last build (dist/assets.json). */
export async function readManifest() {
  return JSON.parse(await readFile(path.join(dist, MANIFEST), 'utf8'));
}

/**
 * Bundles the test harness (binding + runners for an in-page test) into `outdir/harness.js`, with the
 * worker and Ace URLs of the current dist/ build (build() first).
 */
export async function buildHarness(outdir) {
  const { urls } = await readManifest();
  await esbuild.build({
    ...commonOptions(true),
    entryPoints: { harness: path.join(here, 'test-harness/harness.js') },
    format: 'iife',
    outdir,
    define: { __DUET_ASSETS__: JSON.stringify(assetsDefine(urls)) },
  });
  const html = await readFile(path.join(here, 'test-harness/harness.html'), 'utf8');
  await writeFile(path.join(outdir, 'harness.html'), rewriteStaticRefs(html, urls, 'harness.html'));
}

async function watch() {
  const { outputs } = await buildInto({ dev: true, hashed: false, compress: false });
  for (const stage of bundleStages({ dev: true, hashed: false, urls: outputs.urls, sizes: outputs.pyodideSizes })) {
    for (const opts of stage()) {
      const ctx = await esbuild.context({ ...opts, metafile: false });
      await ctx.watch();
    }
  }
  console.log('watching frontend/src for changes…');
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const started = Date.now();
  if (args.includes('--watch')) {
    await watch();
  } else {
    await build({ dev: args.includes('--dev') });
    console.log(`frontend built into ${path.relative(process.cwd(), dist) || 'dist'} in ${Date.now() - started} ms`);
  }
}
