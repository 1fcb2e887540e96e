// Run and Stop (#run-btn, #stop-btn), the Ctrl/⌘+Enter shortcut anywhere on the page, the Python
// download progress (#py-progress), and why Run is disabled when the interview does not allow this
// user to run code (#run-reason).
import { $, isMac } from './dom.js';

const RUN_REASONS = {
  runs_off: 'The interviewer has turned code running off',
  ended: 'The interview has ended',
  waiting: 'The interview has not started yet',
};

/** The download bar never shows 100% before the runtime reports it is ready (compiling takes a while). */
const MAX_LOADING_PERCENT = 99;

/** The shortcut as this platform writes it; shown from the start, before the page has joined. */
export function labelRunShortcut() {
  $('run-kbd').textContent = isMac ? '⌘+Enter' : 'Ctrl+Enter';
}

export function mountRunToolbar(model) {
  const runBtn = $('run-btn');
  const stopBtn = $('stop-btn');
  runBtn.addEventListener('click', () => model.run());
  stopBtn.addEventListener('click', () => model.stop());
  const reasonBox = $('run-reason');
  const render = () => {
    const p = model.permissions;
    const reason = p.run ? null : RUN_REASONS[p.runReason] ?? 'Running code is not allowed now';
    runBtn.disabled = model.running || !p.run;
    stopBtn.disabled = !model.running;
    runBtn.title = reason ?? '';
    reasonBox.hidden = !reason;
    reasonBox.textContent = reason ?? '';
  };
  render();
  model.on('running', render);
  model.on('permissions', render);
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey) && !e.defaultPrevented && !document.querySelector('dialog[open]')) {
      e.preventDefault();
      model.run();
    }
  });

  const progress = $('py-progress');
  const bar = $('py-progress-bar');
  const label = $('py-progress-label');
  model.on('runtime-progress', (p) => {
    if (p.language !== 'python') return;
    if (p.phase === 'loading') {
      progress.hidden = false;
      if (p.total > 0) {
        const pct = Math.min(Math.floor((100 * p.loaded) / p.total), MAX_LOADING_PERCENT);
        bar.value = pct;
        label.textContent = `Loading Python… ${pct}%`;
      } else {
        bar.removeAttribute('value');
        label.textContent = 'Loading Python…';
      }
    } else if (p.phase === 'ready') {
      progress.hidden = true;
    } else if (p.phase === 'error') {
      label.textContent = 'Python failed to load';
    }
  });
}
