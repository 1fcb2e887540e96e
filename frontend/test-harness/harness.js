// Test-only bundle (never part of dist/): exposes the binding, Yjs, Ace and the runners to a test page
// so tests/js/browser-*.test.js can exercise them in real Chromium without a server.
import * as Y from 'yjs';
import * as awarenessProtocol from 'y-protocols/awareness';
import { ace, createEditor, setEditorLanguage } from '../src/ace-setup.js';
import { AceBinding, LABEL_MS } from '../src/ace-yjs.js';
import { HtmlRunner, JsRunner, PythonRunner, htmlDocument } from '../src/runners/index.js';

window.DuetHarness = { Y, awarenessProtocol, ace, createEditor, setEditorLanguage, AceBinding, LABEL_MS, JsRunner, PythonRunner, HtmlRunner, htmlDocument };
