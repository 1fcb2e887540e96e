// Runs Python through Pyodide in a module Web Worker (Pyodide refuses classic workers). The runtime
// is loaded from /static/pyodide/<version>-<hash>/ (copied from the pyodide npm package at build time:
// no CDN; the build passes the URL in __PYODIDE_URL__), lazily, on the first Python run; download
// progress is reported to the page. The page enforces the time limit by terminating this worker (and
// starting a new one).
//
// page → worker: {type: 'load'} | {type: 'run', id, code}
// worker → page: {type: 'progress', loaded, total} | {type: 'ready', version, restored} | {type: 'load-error', message}
//                {type: 'started', id} | {type: 'output', id, stream, text} | {type: 'done', id, status}

/* global __PYODIDE_SIZES__, __PYODIDE_URL__ */
const INDEX_URL = new URL(typeof __PYODIDE_URL__ === 'string' ? __PYODIDE_URL__ : '/static/pyodide/', self.location.href).href;
const KNOWN_SIZES = typeof __PYODIDE_SIZES__ === 'object' ? __PYODIDE_SIZES__ : {};
const TRACKED = Object.keys(KNOWN_SIZES).length ? Object.keys(KNOWN_SIZES) : ['pyodide.asm.wasm', 'python_stdlib.zip'];
const MAX_OUTPUT_CHARS = 512 * 1024;

const post = (msg) => self.postMessage(msg);

// Count the bytes of the two big downloads as Pyodide fetches them (no second download).
const loaded = {};
const totals = {};
function reportProgress() {
  let l = 0;
  let t = 0;
  for (const f of TRACKED) {
    l += loaded[f] || 0;
    t += totals[f] || KNOWN_SIZES[f] || 0;
  }
  post({ type: 'progress', loaded: Math.min(l, t), total: t });
}
const realFetch = self.fetch.bind(self);
self.fetch = async (input, init) => {
  const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
  const name = TRACKED.find((f) => url.split('?')[0].endsWith(`/${f}`));
  const res = name ? await runtimeFetch(url, input, init) : await realFetch(input, init);
  if (!name || !res.ok || !res.body) return res;
  totals[name] = KNOWN_SIZES[name] || Number(res.headers.get('content-length')) || 0;
  loaded[name] = 0;
  const reader = res.body.getReader();
  const body = new ReadableStream({
    async pull(controller) {
      const { done, value } = await reader.read();
      if (done) {
        controller.close();
        return;
      }
      loaded[name] += value.byteLength;
      reportProgress();
      controller.enqueue(value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
  return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
};

// The two big runtime files are also kept decoded in Cache Storage (beside the start-up snapshot,
// about 22 MB): the HTTP cache holds them brotli-compressed, and decoding 22 MB on every load costs
// more than reading them. Only files under this runtime's content-named directory are kept.
async function runtimeFetch(url, input, init) {
  const cache = url.startsWith(INDEX_URL) ? await snapshotCache() : null;
  const hit = await cache?.match(url).catch(() => null);
  if (hit) return hit;
  const res = await realFetch(input, init);
  if (cache && res.ok) cache.put(url, res.clone()).catch(() => {});
  return res;
}

let pyodidePromise = null;
let current = null; // {id, written, truncated, decoder}

function emit(stream, text) {
  if (!current || current.truncated || !text) return;
  if (current.written + text.length > MAX_OUTPUT_CHARS) {
    current.truncated = true;
    post({ type: 'output', id: current.id, stream: 'stderr', text: `\n[output truncated after ${MAX_OUTPUT_CHARS / 1024} KiB]\n` });
    return;
  }
  current.written += text.length;
  post({ type: 'output', id: current.id, stream, text });
}

// Starting Python (running its start-up inside the .wasm) costs seconds of CPU on every load, far more
// than fetching the runtime from the HTTP cache. So the interpreter's memory right after start-up is
// kept in the browser (Cache Storage, about 30 MB) and later loads restore it instead (Pyodide's memory
// snapshots): a second visit, or the fresh worker after a time-out, is ready in well under a second.
// The key holds this worker's URL, which the build names by content (it changes with this code and
// with the Pyodide version it loads); Pyodide also refuses a snapshot made by another build of itself.
// Cache Storage exists only in secure contexts (https, localhost): elsewhere every load starts Python.
const SNAPSHOT_CACHE = 'duet-python';
const SNAPSHOT_PREFIX = new URL('snapshot?', INDEX_URL).href;
const SNAPSHOT_KEY = `${SNAPSHOT_PREFIX}worker=${encodeURIComponent(self.location.pathname)}`;

async function snapshotCache() {
  try {
    return self.caches ? await self.caches.open(SNAPSHOT_CACHE) : null;
  } catch {
    return null; // storage disabled or over quota: start Python every time
  }
}

async function readSnapshot(cache) {
  try {
    const res = await cache?.match(SNAPSHOT_KEY);
    return res ? new Uint8Array(await res.arrayBuffer()) : null;
  } catch {
    return null;
  }
}

async function saveSnapshot(cache, bytes) {
  try {
    // Only the current runtime's files and snapshot are worth their 50 MB.
    for (const req of await cache.keys()) {
      if (req.url !== SNAPSHOT_KEY && (!req.url.startsWith(INDEX_URL) || req.url.startsWith(SNAPSHOT_PREFIX))) await cache.delete(req);
    }
    await cache.put(SNAPSHOT_KEY, new Response(bytes, { headers: { 'content-type': 'application/octet-stream' } }));
  } catch {
    /* quota: the next load starts Python again */
  }
}

async function startPython() {
  const { loadPyodide } = await import(`${INDEX_URL}pyodide.mjs`);
  const options = { indexURL: INDEX_URL, checkAPIVersion: true };
  const cache = await snapshotCache();
  const snapshot = await readSnapshot(cache);
  if (snapshot) {
    try {
      return { py: await loadPyodide({ ...options, _loadSnapshot: snapshot }), restored: true };
    } catch {
      await cache.delete(SNAPSHOT_KEY).catch(() => {}); // another build's, or damaged
    }
  }
  if (!cache) return { py: await loadPyodide(options), restored: false };
  const py = await loadPyodide({ ...options, _makeSnapshot: true });
  // Taken before anything else runs in this interpreter, so a restored one starts the same way.
  saveSnapshot(cache, py.makeMemorySnapshot());
  return { py, restored: false };
}

function load() {
  if (!pyodidePromise) {
    pyodidePromise = (async () => {
      reportProgress();
      const { py, restored } = await startPython();
      const decoders = { stdout: new TextDecoder(), stderr: new TextDecoder() };
      for (const stream of ['stdout', 'stderr']) {
        const setter = stream === 'stdout' ? py.setStdout : py.setStderr;
        setter.call(py, {
          write: (buf) => {
            emit(stream, decoders[stream].decode(buf, { stream: true }));
            return buf.length;
          },
        });
      }
      py.setStdin({ error: true });
      // There is no keyboard to read from: say so instead of a bare I/O error.
      py.runPython(
        'import builtins\n' +
          'def input(prompt=""):\n' +
          '    raise EOFError("input() is not available here: the program cannot read from the keyboard")\n' +
          'builtins.input = input\n' +
          'del input',
      );
      post({ type: 'ready', version: py.version, restored });
      return py;
    })();
    pyodidePromise.catch((e) => post({ type: 'load-error', message: String(e?.message ?? e) }));
  }
  return pyodidePromise;
}

/** Keeps the traceback from the first frame of the user's program ("main.py") on. */
export function trimTraceback(message) {
  const lines = String(message).replace(/\n+$/, '').split('\n');
  const first = lines.findIndex((l) => /^ {2}File "main\.py"/.test(l));
  if (lines[0].startsWith('Traceback') && first > 0) return [lines[0], ...lines.slice(first)].join('\n');
  return lines.join('\n');
}

async function run(id, code) {
  let py;
  try {
    py = await load();
  } catch (e) {
    post({ type: 'output', id, stream: 'stderr', text: `Could not load Python: ${e?.message ?? e}\n` });
    post({ type: 'done', id, status: 'error' });
    return;
  }
  current = { id, written: 0, truncated: false };
  post({ type: 'started', id });
  const globals = py.globals.get('dict')();
  globals.set('__name__', '__main__');
  let status = 'ok';
  try {
    await py.runPythonAsync(code, { globals, filename: 'main.py' });
  } catch (e) {
    status = 'error';
    try {
      py.runPython('import sys\nsys.stdout.flush()');
    } catch {
      /* ignore */
    }
    emit('stderr', `${trimTraceback(e?.message ?? e)}\n`);
  } finally {
    try {
      py.runPython('import sys\nsys.stdout.flush()\nsys.stderr.flush()');
    } catch {
      /* ignore */
    }
    globals.destroy();
  }
  post({ type: 'done', id, status });
  current = null;
}

// Runs one at a time, in order.
let queue = Promise.resolve();
self.onmessage = (e) => {
  const msg = e.data || {};
  if (msg.type === 'load') load().catch(() => {});
  else if (msg.type === 'run') queue = queue.then(() => run(msg.id, String(msg.code ?? '')));
};
