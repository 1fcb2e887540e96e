// Runs code in the browser, never on the server:
// - JavaScript: a fresh Web Worker per run, console captured, terminated on timeout or Stop.
// - Python: Pyodide in a module Web Worker, loaded on the first Python run (with progress), kept warm
//   between runs; terminated on timeout or Stop and replaced by a new one.
// - HTML/CSS: rendered in an iframe with sandbox="allow-scripts" (no allow-same-origin) through srcdoc;
//   its console and uncaught errors are captured through postMessage.
//
// Every run resolves to {status: 'ok'|'error'|'timeout', output, duration_ms}; output is what the
// execute_code event carries (stdout and stderr interleaved, as printed).

import { ASSETS } from '../assets.js';

export const DEFAULT_TIME_LIMIT_MS = 5000;
const MAX_SHARED_OUTPUT = 64 * 1024;

function clip(text) {
  if (text.length <= MAX_SHARED_OUTPUT) return text;
  return `${text.slice(0, MAX_SHARED_OUTPUT)}\n[output truncated]`;
}

/** Collects output chunks and forwards them to the page as they arrive. */
class Output {
  constructor(onOutput) {
    this.onOutput = onOutput || (() => {});
    this.text = '';
  }

  push(stream, text) {
    if (!text) return;
    this.text += text;
    this.onOutput({ stream, text });
  }
}

function secondsLabel(ms) {
  return `${Math.round(ms / 100) / 10} s`;
}

// ---- JavaScript -----------------------------------------------------------------------------------

export class JsRunner {
  constructor({ workerUrl = ASSETS.jsWorker, timeLimitMs = DEFAULT_TIME_LIMIT_MS } = {}) {
    this.workerUrl = workerUrl;
    this.timeLimitMs = timeLimitMs;
    this._stop = null;
  }

  run(code, { onOutput } = {}) {
    const out = new Output(onOutput);
    const started = performance.now();
    return new Promise((resolve) => {
      const worker = new Worker(this.workerUrl, { name: 'duet-js-runner' });
      let timer = null;
      const end = (status, note) => {
        clearTimeout(timer);
        worker.terminate();
        this._stop = null;
        if (note) out.push('stderr', note);
        resolve({ status, output: clip(out.text), duration_ms: Math.round(performance.now() - started) });
      };
      this._stop = () => end('error', '[stopped]\n');
      worker.onmessage = (e) => {
        const m = e.data || {};
        if (m.type === 'output') out.push(m.stream, m.text);
        else if (m.type === 'done') end(m.status === 'ok' ? 'ok' : 'error');
      };
      worker.onerror = (e) => {
        e.preventDefault();
        end('error', `Could not run JavaScript: ${e.message || 'the runner failed to start'}\n`);
      };
      timer = setTimeout(() => end('timeout', `[stopped: time limit of ${secondsLabel(this.timeLimitMs)} exceeded]\n`), this.timeLimitMs);
      worker.postMessage({ type: 'run', code });
    });
  }

  stop() {
    if (this._stop) this._stop();
  }
}

// ---- Python ---------------------------------------------------------------------------------------

export class PythonRunner {
  /**
   * @param {object} [opts]
   * @param {(p: {phase: 'loading'|'ready'|'error', loaded?: number, total?: number, message?: string, restored?: boolean}) => void} [opts.onLoadProgress]
   *   `restored`: the interpreter came from the snapshot kept in the browser (py-worker.js)
   */
  constructor({ workerUrl = ASSETS.pyWorker, timeLimitMs = DEFAULT_TIME_LIMIT_MS, onLoadProgress } = {}) {
    this.workerUrl = workerUrl;
    this.timeLimitMs = timeLimitMs;
    this.onLoadProgress = onLoadProgress || (() => {});
    this.worker = null;
    this.ready = false;
    this._readyWaiters = [];
    this._runs = new Map();
    this._nextId = 1;
  }

  get loading() {
    return !!this.worker && !this.ready;
  }

  _ensureWorker() {
    if (this.worker) return this.worker;
    const worker = new Worker(this.workerUrl, { type: 'module', name: 'duet-python-runner' });
    this.worker = worker;
    this.ready = false;
    worker.onmessage = (e) => this._onMessage(worker, e.data || {});
    worker.onerror = (e) => {
      e.preventDefault();
      this._failAll(worker, `Python runner failed: ${e.message || 'could not start'}\n`);
    };
    worker.postMessage({ type: 'load' });
    this.onLoadProgress({ phase: 'loading', loaded: 0, total: 0 });
    return worker;
  }

  /** Starts loading Pyodide in the background (e.g. when the interview's language is Python). */
  preload() {
    this._ensureWorker();
  }

  _onMessage(worker, m) {
    if (worker !== this.worker) return;
    if (m.type === 'progress') {
      this.onLoadProgress({ phase: 'loading', loaded: m.loaded, total: m.total });
    } else if (m.type === 'ready') {
      this.ready = true;
      this.onLoadProgress({ phase: 'ready', version: m.version, restored: !!m.restored });
    } else if (m.type === 'load-error') {
      this.onLoadProgress({ phase: 'error', message: m.message });
    } else if (m.type === 'started') {
      this._runs.get(m.id)?.onStarted();
    } else if (m.type === 'output') {
      this._runs.get(m.id)?.out.push(m.stream, m.text);
    } else if (m.type === 'done') {
      this._runs.get(m.id)?.end(m.status === 'ok' ? 'ok' : 'error');
    }
  }

  _failAll(worker, note) {
    if (worker !== this.worker) return;
    this._kill();
    for (const run of [...this._runs.values()]) run.end('error', note);
  }

  _kill() {
    if (this.worker) this.worker.terminate();
    this.worker = null;
    this.ready = false;
  }

  run(code, { onOutput } = {}) {
    const out = new Output(onOutput);
    const id = this._nextId++;
    const worker = this._ensureWorker();
    const started = performance.now();
    return new Promise((resolve) => {
      let timer = null;
      let runStarted = null;
      const run = {
        out,
        onStarted: () => {
          // The time limit counts the program, not the download of the runtime.
          runStarted = performance.now();
          timer = setTimeout(() => {
            // Python cannot be interrupted without cross-origin isolation: end the worker, make a new one.
            this._kill();
            run.end('timeout', `[stopped: time limit of ${secondsLabel(this.timeLimitMs)} exceeded]\n`);
            this.preload();
          }, this.timeLimitMs);
        },
        end: (status, note) => {
          if (!this._runs.has(id)) return;
          this._runs.delete(id);
          clearTimeout(timer);
          if (note) out.push('stderr', note);
          const from = runStarted ?? started;
          resolve({ status, output: clip(out.text), duration_ms: Math.round(performance.now() - from) });
        },
      };
      this._runs.set(id, run);
      this._stop = () => {
        const loadingOnly = runStarted === null;
        this._kill();
        run.end('error', loadingOnly ? '[stopped while Python was loading]\n' : '[stopped]\n');
        if (!loadingOnly) this.preload();
      };
      worker.postMessage({ type: 'run', id, code });
    });
  }

  stop() {
    if (this._stop && this._runs.size) this._stop();
  }
}

// ---- HTML / CSS -----------------------------------------------------------------------------------

// Injected first into the page: forwards console output and uncaught errors to the parent window.
// It runs inside the sandbox (opaque origin): it can post messages, nothing else.
const CAPTURE_SCRIPT = `<script>(function(){
var P=parent;function f(a){try{if(typeof a==='string')return a;if(a instanceof Error)return a.name+': '+a.message;
return JSON.stringify(a)===undefined?String(a):JSON.stringify(a);}catch(e){return String(a);}}
function s(level,args){try{P.postMessage({duet:'html-console',level:level,text:Array.prototype.map.call(args,f).join(' ')},'*');}catch(e){}}
['log','info','debug','warn','error'].forEach(function(l){console[l]=function(){s(l,arguments);};});
addEventListener('error',function(e){e.preventDefault();s('error',['Uncaught '+(e.error?f(e.error):e.message)+(e.lineno?' (line '+e.lineno+')':'')]);});
addEventListener('unhandledrejection',function(e){e.preventDefault();s('error',['Uncaught (in promise) '+f(e.reason)]);});
addEventListener('load',function(){try{P.postMessage({duet:'html-loaded'},'*');}catch(e){}});
})();<\/script>`;

export function htmlDocument(userHtml) {
  const m = /^\s*<!doctype[^>]*>/i.exec(userHtml);
  if (m) return m[0] + CAPTURE_SCRIPT + userHtml.slice(m[0].length);
  return CAPTURE_SCRIPT + userHtml;
}

/** The preview page (services/gateway/src/pages.rs serves it with its own policy). */
export const PREVIEW_URL = '/preview';

export class HtmlRunner {
  /** @param {{container: HTMLElement, settleMs?: number}} opts where the preview iframe goes */
  constructor({ container, settleMs = 300, timeLimitMs = DEFAULT_TIME_LIMIT_MS }) {
    this.container = container;
    this.settleMs = settleMs;
    this.timeLimitMs = timeLimitMs;
    this.iframe = null;
    this._onMessage = null;
  }

  run(code, { onOutput } = {}) {
    const out = new Output(onOutput);
    const started = performance.now();
    this.clear();
    const iframe = document.createElement('iframe');
    iframe.setAttribute('sandbox', 'allow-scripts');
    iframe.setAttribute('title', 'HTML preview');
    iframe.setAttribute('referrerpolicy', 'no-referrer');
    iframe.className = 'preview-frame';
    this.iframe = iframe;
    let errors = 0;
    const html = htmlDocument(code);
    let loaded = null;
    this._onMessage = (e) => {
      if (e.source !== iframe.contentWindow || !e.data) return;
      if (e.data.duet === 'html-ready') {
        // The preview page (served with a policy of its own) asks for the document to write.
        iframe.contentWindow.postMessage({ duet: 'html-run', html }, '*');
        return;
      }
      if (e.data.duet === 'html-loaded') {
        loaded?.();
        return;
      }
      if (e.data.duet !== 'html-console') return;
      const level = String(e.data.level);
      const stream = level === 'error' || level === 'warn' ? 'stderr' : 'stdout';
      if (level === 'error') errors++;
      out.push(stream, `${String(e.data.text)}\n`);
    };
    window.addEventListener('message', this._onMessage);
    return new Promise((resolve) => {
      let done = false;
      const finish = (status) => {
        if (done) return;
        done = true;
        clearTimeout(limit);
        if (this._finish && this.iframe === iframe) this._finish = null;
        const output = out.text || '(rendered in the preview)\n';
        resolve({ status, output: clip(output), duration_ms: Math.round(performance.now() - started) });
      };
      const limit = setTimeout(() => finish('timeout'), this.timeLimitMs);
      this._finish = (status) => finish(status);
      loaded = () => setTimeout(() => finish(errors ? 'error' : 'ok'), this.settleMs);
      // Not srcdoc: a srcdoc document inherits the page's Content-Security-Policy, which allows no
      // inline script. /preview is served with a policy for a participant's HTML; sandboxed, it is
      // an opaque origin and gets the document by message.
      iframe.src = PREVIEW_URL;
      this.container.appendChild(iframe);
    });
  }

  stop() {
    this._finish?.('error');
    this.clear();
  }

  clear() {
    this._finish = null;
    if (this._onMessage) window.removeEventListener('message', this._onMessage);
    this._onMessage = null;
    if (this.iframe) this.iframe.remove();
    this.iframe = null;
  }
}
