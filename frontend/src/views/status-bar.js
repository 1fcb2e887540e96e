// The connection and save indicator (#status): data-state, data-unsaved, a label and a longer title.
import { $ } from './dom.js';

const edits = (n) => `${n} unsaved edit${n === 1 ? '' : 's'}`;

function describe(st) {
  switch (st.state) {
    case 'connecting':
      return ['Connecting…', 'Connecting to the interview.'];
    case 'syncing':
      return ['Connected · syncing…', 'Connected; loading the latest code.'];
    case 'saving':
      return ['Connected · saving…', `Connected; ${edits(st.unsaved)} waiting for the server to save them.`];
    case 'saved':
      return ['Connected · all changes saved', 'Connected; every edit is saved.'];
    case 'reconnecting':
      return ['Reconnecting…', 'The connection dropped; reconnecting. Nothing is waiting to be saved.'];
    case 'offline':
      return st.unsaved > 0
        ? [`Offline · ${edits(st.unsaved)}`, `Not connected. Keep typing: your ${edits(st.unsaved)} will be sent when the connection is back.`]
        : ['Offline', 'Not connected; retrying.'];
    default:
      return ['Disconnected', 'This page is no longer connected to the interview.'];
  }
}

export function mountStatusBar(model) {
  const box = $('status');
  const text = box.querySelector('.status-text');
  const render = (st) => {
    const [label, detail] = describe(st);
    box.dataset.state = st.state;
    box.dataset.unsaved = String(st.unsaved);
    box.title = detail;
    text.textContent = label;
  };
  render(model.status);
  model.on('status', render);
}
