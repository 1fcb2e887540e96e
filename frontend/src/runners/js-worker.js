// Runs one JavaScript program in a dedicated Web Worker (a fresh worker per run, so nothing leaks from
// one run into the next). The page enforces the time limit by terminating the worker.
//
// page → worker: {type: 'run', code}
// worker → page: {type: 'output', stream: 'stdout'|'stderr', text}
//                {type: 'done', status: 'ok'|'error'}
//
// The program may use top-level await; it is finished when its body has settled and no timer it set
// is pending (like Node.js exiting when the event loop is empty). An uncaught error ends it.
import { PROGRAM_PREFIX, errorText, formatArgs } from './format.js';

const MAX_OUTPUT_CHARS = 512 * 1024;
let written = 0;
let truncated = false;
let finished = false;
let failed = false;
let bodyDone = false;

const post = self.postMessage.bind(self);

function write(stream, text) {
  if (finished || truncated) return;
  const line = `${text}\n`;
  if (written + line.length > MAX_OUTPUT_CHARS) {
    truncated = true;
    post({ type: 'output', stream: 'stderr', text: `[output truncated after ${MAX_OUTPUT_CHARS / 1024} KiB]\n` });
    return;
  }
  written += line.length;
  post({ type: 'output', stream, text: line });
}

function finish(status) {
  if (finished) return;
  finished = true;
  post({ type: 'done', status });
}

function fail(err) {
  failed = true;
  write('stderr', errorText(err));
  finish('error');
}

// ---- console --------------------------------------------------------------------------------------

const counts = new Map();
const timers = new Map();
let indent = '';
const out = (stream) => (...args) => write(stream, indent + formatArgs(args).replace(/\n/g, `\n${indent}`));
const fakeConsole = {
  log: out('stdout'),
  info: out('stdout'),
  debug: out('stdout'),
  trace: out('stdout'),
  dir: (v) => out('stdout')(v),
  dirxml: out('stdout'),
  table: out('stdout'),
  warn: out('stderr'),
  error: out('stderr'),
  assert: (cond, ...args) => {
    if (!cond) out('stderr')('Assertion failed' + (args.length ? ':' : ''), ...args);
  },
  count: (label = 'default') => {
    const n = (counts.get(label) || 0) + 1;
    counts.set(label, n);
    out('stdout')(`${label}: ${n}`);
  },
  countReset: (label = 'default') => counts.delete(label),
  time: (label = 'default') => timers.set(label, performance.now()),
  timeLog: (label = 'default', ...args) => {
    if (timers.has(label)) out('stdout')(`${label}: ${(performance.now() - timers.get(label)).toFixed(3)}ms`, ...args);
  },
  timeEnd: (label = 'default') => {
    if (!timers.has(label)) return;
    out('stdout')(`${label}: ${(performance.now() - timers.get(label)).toFixed(3)}ms`);
    timers.delete(label);
  },
  group: (...args) => {
    if (args.length) out('stdout')(...args);
    indent += '  ';
  },
  groupCollapsed: (...args) => fakeConsole.group(...args),
  groupEnd: () => {
    indent = indent.slice(2);
  },
  clear: () => {},
};
self.console = fakeConsole;

// ---- timers: the program is done when none is pending ---------------------------------------------

const realSetTimeout = self.setTimeout.bind(self);
const realClearTimeout = self.clearTimeout.bind(self);
const realSetInterval = self.setInterval.bind(self);
const realClearInterval = self.clearInterval.bind(self);
const active = new Set();

function checkDone() {
  if (!bodyDone || finished || active.size > 0) return;
  // Let pending promise callbacks run first, and the 'unhandledrejection' event (a task queued after
  // the microtask checkpoint) arrive.
  realSetTimeout(() => {
    realSetTimeout(() => {
      if (bodyDone && !finished && active.size === 0) finish(failed ? 'error' : 'ok');
    }, 5);
  }, 0);
}

function guard(fn, args) {
  try {
    if (typeof fn === 'function') fn(...args);
  } catch (e) {
    fail(e);
  }
}

self.setTimeout = (fn, ms, ...args) => {
  const id = realSetTimeout(() => {
    active.delete(id);
    guard(fn, args);
    checkDone();
  }, ms);
  active.add(id);
  return id;
};
self.clearTimeout = (id) => {
  active.delete(id);
  realClearTimeout(id);
  checkDone();
};
self.setInterval = (fn, ms, ...args) => {
  const id = realSetInterval(() => guard(fn, args), ms);
  active.add(id);
  return id;
};
self.clearInterval = (id) => {
  active.delete(id);
  realClearInterval(id);
  checkDone();
};

self.addEventListener('error', (e) => {
  e.preventDefault();
  fail(e.error ?? new Error(e.message));
});
self.addEventListener('unhandledrejection', (e) => {
  e.preventDefault();
  fail(e.reason);
});

// ---- run ------------------------------------------------------------------------------------------

self.onmessage = async (e) => {
  const msg = e.data;
  if (!msg || msg.type !== 'run') return;
  self.onmessage = null; // one program per worker
  let body;
  try {
    // Indirect eval in the global scope; no newline after the opening brace so line numbers in
    // stack traces are the program's own. `//# sourceURL` names the frames "main.js".
    body = (0, eval)(`${PROGRAM_PREFIX}${msg.code}\n})\n//# sourceURL=main.js`);
  } catch (err) {
    fail(err);
    return;
  }
  try {
    await body.call(self);
  } catch (err) {
    fail(err);
    return;
  }
  bodyDone = true;
  checkDone();
};
post({ type: 'ready' });
