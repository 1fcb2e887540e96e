// Who is here: the participants list (#participants, #people-count) and the avatars in the top bar
// (#avatars, the first few and "+N").
import { safeColor } from '../ace-yjs.js';
import { $, el, initials } from './dom.js';

/** Avatars shown in the top bar before the rest collapse into "+N". */
const MAX_AVATARS = 4;

export function mountParticipants(model) {
  const list = $('participants');
  const avatars = $('avatars');
  const count = $('people-count');
  const render = (people) => {
    list.replaceChildren(
      ...people.map((p) =>
        el(
          'li',
          { class: 'participant', dataset: { userId: p.user_id } },
          el('span', { class: 'avatar', style: `--c:${safeColor(p.color)}`, 'aria-hidden': 'true' }, initials(p.name)),
          el('span', { class: 'participant-name' }, p.name),
          p.self ? el('span', { class: 'you' }, '(you)') : null,
        ),
      ),
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
}
