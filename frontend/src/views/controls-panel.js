// The interviewer's controls (#controls-panel, interviewers only): lock the candidate's editing, let
// candidates run code or not. A switch shows the interview's state: flipped at once, put back if the
// server refuses.
import { $ } from './dom.js';

export function mountControlsPanel(model) {
  const panel = $('controls-panel');
  const lock = $('ctl-lock');
  const runs = $('ctl-runs');
  const render = () => {
    const p = model.permissions;
    const lc = model.lifecycle;
    panel.hidden = !p.control;
    panel.closest('.side-pane')?.classList.toggle('has-controls', p.control);
    const ended = lc?.state === 'ended';
    lock.checked = !!lc?.editing_locked;
    runs.checked = lc ? lc.runs_enabled : true;
    lock.disabled = ended;
    runs.disabled = ended;
  };
  const change = async (input, field) => {
    input.disabled = true;
    const res = await model.setControls({ [field]: input.checked });
    input.disabled = model.lifecycle?.state === 'ended';
    if (!res.ok) render(); // put the switch back
  };
  lock.addEventListener('change', () => change(lock, 'editing_locked'));
  runs.addEventListener('change', () => change(runs, 'runs_enabled'));
  render();
  model.on('lifecycle', render);
  model.on('permissions', render);
}
