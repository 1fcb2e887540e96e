// Builds Duet's browser client into frontend/dist/ (nothing built is committed).
//
//   dist/index.html            landing page, served at /
//   dist/editor.html           editor page, served at /interview/<CODE>
//   dist/static/...            everything else, referenced as /static/...
//
// Usage: node build.mjs [--dev] [--watch]
//   --dev    no minification (source maps are always written)
//   --watch  rebuild bundles on change (implies --dev)
//
// Also exports buildHarness(outdir) for the browser tests (tests/js/browser-*.test.js): a bundle that
// exposes the Ace–Yjs binding and the code runners to a test page, never part of dist/.
import * as esbuild from 'esbuild';
import { createHash } from 'node:crypto';
import { cp, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const src = path.join(here, 'src');
const dist = path.join(here, 'dist');
const staticDir = path.join(dist, 'static');
const nm = path.join(here, 'node_modules');

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
// Ace files loaded at run time from /static/ace/ (modes and themes are bundled into editor.js).
const ACE_FILES = ['worker-javascript.js', 'worker-html.js', 'worker-css.js', 'ext-searchbox.js'];

async function exists(p) {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

async function pyodideSizes() {
  const sizes = {};
  for (const f of ['pyodide.asm.wasm', 'python_stdlib.zip']) {
    sizes[f] = (await stat(path.join(nm, 'pyodide', f))).size;
  }
  return sizes;
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

async function bundleOptions(dev) {
  const sizes = await pyodideSizes();
  const base = commonOptions(dev);
  return [
    {
      ...base,
      entryPoints: {
        landing: path.join(src, 'pages/landing.js'),
        editor: path.join(src, 'pages/editor.js'),
        'js-worker': path.join(src, 'runners/js-worker.js'),
      },
      format: 'iife',
      outdir: staticDir,
    },
    {
      // Pyodide 0.28+ refuses classic workers: the Python worker is a module worker.
      ...base,
      entryPoints: { 'py-worker': path.join(src, 'runners/py-worker.js') },
      format: 'esm',
      outdir: staticDir,
      external: ['/static/*'],
      define: { __PYODIDE_SIZES__: JSON.stringify(sizes) },
    },
    {
      ...base,
      entryPoints: { styles: path.join(src, 'styles.css') },
      outdir: staticDir,
      loader: { '.svg': 'dataurl' },
    },
  ];
}

async function shortHash(file) {
  const buf = await readFile(file);
  return createHash('sha256').update(buf).digest('hex').slice(0, 10);
}

// Copies the HTML pages, adding a content hash to every /static/ bundle they reference so a browser
// never runs a stale bundle after an upgrade.
async function writePages() {
  for (const page of ['index.html', 'editor.html']) {
    let html = await readFile(path.join(src, page), 'utf8');
    const refs = [...html.matchAll(/\/static\/([\w.-]+\.(?:js|css|svg))"/g)].map((m) => m[1]);
    for (const ref of new Set(refs)) {
      const file = path.join(staticDir, ref);
      if (await exists(file)) {
        html = html.replaceAll(`/static/${ref}"`, `/static/${ref}?v=${await shortHash(file)}"`);
      }
    }
    await writeFile(path.join(dist, page), html);
  }
}

async function copyRuntime() {
  await mkdir(path.join(staticDir, 'pyodide'), { recursive: true });
  for (const f of PYODIDE_FILES) {
    const from = path.join(nm, 'pyodide', f);
    if (await exists(from)) await cp(from, path.join(staticDir, 'pyodide', f));
  }
  await mkdir(path.join(staticDir, 'ace'), { recursive: true });
  for (const f of ACE_FILES) {
    await cp(path.join(nm, 'ace-builds/src-min-noconflict', f), path.join(staticDir, 'ace', f));
  }
  await cp(path.join(src, 'favicon.svg'), path.join(staticDir, 'favicon.svg'));
}

export async function build({ dev = false } = {}) {
  await rm(dist, { recursive: true, force: true });
  await mkdir(staticDir, { recursive: true });
  for (const opts of await bundleOptions(dev)) await esbuild.build(opts);
  await copyRuntime();
  await writePages();
}

/** Bundles the test harness (binding + runners for an in-page test) into `outdir/harness.js`. */
export async function buildHarness(outdir) {
  await esbuild.build({
    ...commonOptions(true),
    entryPoints: { harness: path.join(here, 'test-harness/harness.js') },
    format: 'iife',
    outdir,
  });
  await cp(path.join(here, 'test-harness/harness.html'), path.join(outdir, 'harness.html'));
}

async function watch() {
  await build({ dev: true });
  const contexts = [];
  for (const opts of await bundleOptions(true)) {
    const ctx = await esbuild.context({
      ...opts,
      plugins: [{ name: 'pages', setup: (b) => b.onEnd(() => writePages().catch(console.error)) }],
    });
    await ctx.watch();
    contexts.push(ctx);
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
