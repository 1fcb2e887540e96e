// Who is here: the participants list (#participants, #people-count) and the avatars in the top bar
// (#avatars, the first few and "+N"). An interviewer gets a Remove button next to everyone else
// (asked to confirm first), and sees who has left the page (an "away" tag until they come back).
import { safeColor } from '../ace-yjs.js';
import { confirmAction } from './confirm-dialog.js';
import { $, el, initials } from './dom.js';

/** Avatars shown in the top bar before the rest collapse into "+N". */
const MAX_AVATARS = 4;

export function mountParticipants(model) {
  const list = $('participants');
  const avatars = $('avatars');
  const count = $('people-count');
  const remove = async (p, button) => {
    const ok = await confirmAction({
      title: `Remove ${p.name}?`,
      message: `${p.name} is disconnected at once and can no longer join with the access they have now. Their edits so far stay.`,
      confirm: 'Remove',
    });
    if (!ok) return;
    button.disabled = true;
    const res = await model.removeParticipant(p.user_id);
    if (!res.ok) button.disabled = false;
  };
  const render = (people) => {
    const canRemove = model.permissions.control && model.lifecycle?.state !== 'ended';
    list.replaceChildren(
      ...people.map((p) => {
        const li = el(
          'li',
          { class: p.away ? 'participant participant-away' : 'participant', dataset: { userId: p.user_id } },
          el('span', { class: 'avatar', style: `--c:${safeColor(p.color)}`, 'aria-hidden': 'true' }, initials(p.name)),
          el('span', { class: 'participant-name' }, p.name),
          p.self ? el('span', { class: 'you' }, '(you)') : null,
          p.away ? el('span', { class: 'away-tag', title: `${p.name} left the page (another tab or window)` }, 'away') : null,
        );
        if (canRemove && !p.self) {
          const button = el('button', { type: 'button', class: 'btn btn-small btn-ghost remove-btn', 'aria-label': `Remove ${p.name} from the interview` }, 'Remove');
          button.addEventListener('click', () => remove(p, button));
          li.append(button);
        }
        return li;
      }),
    );
    avatars.replaceChildren(
      ...people
        .slice(0, MAX_AVATARS)
        .map((p) => el('li', { class: 'avatar', style: `--c:${safeColor(p.color)}`, title: p.self ? `${p.name} (you)` : p.name }, initials(p.name))),
      ...(people.length > MAX_AVATARS ? [el('li', { class: 'avatar avatar-more' }, `+${people.length - MAX_AVATARS}`)] : []),
    );
    count.textContent = String(people.length);
  };
  render(model.participants);
  model.on('participants', ({ participants }) => render(participants));
  model.on('permissions', () => render(model.participants));
  model.on('lifecycle', () => render(model.participants));
}
