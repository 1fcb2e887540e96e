// The language select (#language): shows the interview's language, sends the user's choice to the model;
// disabled while this user may not edit (ended, locked, not started).
import { $ } from './dom.js';

/** Shows `language` in the select (also before the page has joined, as the session API reported it). */
export function showLanguage(language) {
  $('language').value = language;
}

export function mountLanguagePicker(model) {
  const select = $('language');
  showLanguage(model.language);
  model.on('language', ({ language }) => showLanguage(language));
  const render = () => {
    select.disabled = !model.permissions.language;
  };
  render();
  model.on('permissions', render);
  select.addEventListener('change', () => model.changeLanguage(select.value));
}
