// What the editor page reports to the interview record about this user (docs/PROTOCOL.md, `activity`):
// pastes into an editor (their size, never their text) and leaving the page (the tab hidden, or the
// window left for another one) and coming back. Reported through `report(kind, fields)` — the session
// model's `reportActivity` — and never shown to this user.
//
// Leaving and coming back is debounced: only a state that holds for `debounceMs` is reported, and only
// when it differs from the last one reported (a quick Alt-Tab there and back is nothing). Focus moving
// into one of the page's own frames (the HTML preview) blurs the window without leaving the page: not
// reported.

/** How long a left or returned state must hold before it is reported. */
export const PRESENCE_DEBOUNCE_MS = 400;

/**
 * Reports pastes into an Ace editor as `paste {size, doc}` (size in UTF-16 units, as Ace hands the
 * text over); pastes into a read-only editor change nothing and are not reported.
 * @returns {() => void} stops watching
 */
export function watchPastes(editor, doc, report) {
  const onPaste = (e) => {
    const text = typeof e?.text === 'string' ? e.text : '';
    if (text.length > 0 && !editor.getReadOnly()) report('paste', { size: text.length, doc });
  };
  editor.on('paste', onPaste);
  return () => editor.off('paste', onPaste);
}

/**
 * Reports the page being left (`blur`) and come back to (`focus`).
 * @param {{report: (kind: string) => void, win?: Window, doc?: Document, debounceMs?: number}} opts
 * @returns {() => void} stops watching
 */
export function watchPresence({ report, win = window, doc = document, debounceMs = PRESENCE_DEBOUNCE_MS }) {
  let away = false; // what was reported last: the page starts as present
  let timer = null;
  const inOwnFrame = () => doc.activeElement?.tagName === 'IFRAME';
  const isAway = () => doc.visibilityState === 'hidden' || (!doc.hasFocus() && !inOwnFrame());
  const check = () => {
    timer = null;
    const now = isAway();
    if (now !== away) {
      away = now;
      report(now ? 'blur' : 'focus');
    }
  };
  const schedule = () => {
    clearTimeout(timer);
    timer = setTimeout(check, debounceMs);
  };
  doc.addEventListener('visibilitychange', schedule);
  win.addEventListener('blur', schedule);
  win.addEventListener('focus', schedule);
  return () => {
    clearTimeout(timer);
    doc.removeEventListener('visibilitychange', schedule);
    win.removeEventListener('blur', schedule);
    win.removeEventListener('focus', schedule);
  };
}
