// Ace, bundled: the core, the three modes Duet supports, Markdown (the interviewers' private notes) and a
// light and a dark theme. Workers (syntax
// checking) and the search box are loaded at run time from /static/ace/<version>/ (copied there by the
// build).
import ace from 'ace-builds/src-noconflict/ace';
import { ASSETS } from './assets.js';
import 'ace-builds/src-noconflict/mode-javascript';
import 'ace-builds/src-noconflict/mode-python';
import 'ace-builds/src-noconflict/mode-html';
import 'ace-builds/src-noconflict/mode-markdown';
import 'ace-builds/src-noconflict/theme-cloud_editor';
import 'ace-builds/src-noconflict/theme-cloud_editor_dark';

ace.config.set('basePath', ASSETS.aceBase);
ace.config.set('workerPath', ASSETS.aceBase);
ace.config.set('loadWorkerFromBlob', false);

export { ace };

export const MODES = {
  javascript: 'ace/mode/javascript',
  python: 'ace/mode/python',
  html: 'ace/mode/html',
};

const LIGHT = 'ace/theme/cloud_editor';
const DARK = 'ace/theme/cloud_editor_dark';

/** Light or dark with the page (prefers-color-scheme), live. */
function followColorScheme(editor) {
  const dark = window.matchMedia ? window.matchMedia('(prefers-color-scheme: dark)') : null;
  const applyTheme = () => editor.setTheme(dark && dark.matches ? DARK : LIGHT);
  applyTheme();
  dark?.addEventListener?.('change', applyTheme);
}

export function createEditor(element, { language = 'javascript', placeholder = '' } = {}) {
  const editor = ace.edit(element, {
    mode: MODES[language] || MODES.javascript,
    fontSize: 14,
    tabSize: language === 'python' ? 4 : 2,
    useSoftTabs: true,
    showPrintMargin: false,
    highlightActiveLine: true,
    scrollPastEnd: 0.3,
    placeholder,
    enableKeyboardAccessibility: true,
    textInputAriaLabel: 'Shared code',
  });
  editor.session.setUseWrapMode(false);
  followColorScheme(editor);
  return editor;
}

/** The private notes' editor: Markdown, soft-wrapped, no gutter. */
export function createNotesEditor(element, { placeholder = '', label = 'Private notes' } = {}) {
  const editor = ace.edit(element, {
    mode: 'ace/mode/markdown',
    fontSize: 13,
    tabSize: 2,
    useSoftTabs: true,
    showPrintMargin: false,
    showGutter: false,
    highlightActiveLine: false,
    placeholder,
    enableKeyboardAccessibility: true,
    textInputAriaLabel: label,
  });
  editor.session.setUseWrapMode(true);
  editor.renderer.setPadding(10);
  editor.renderer.setScrollMargin(6, 6);
  followColorScheme(editor);
  return editor;
}

export function setEditorLanguage(editor, language) {
  const mode = MODES[language];
  if (!mode) return;
  editor.session.setMode(mode);
  editor.session.setTabSize(language === 'python' ? 4 : 2);
}
