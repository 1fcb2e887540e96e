// The review page's first act: asks for the record and the history with the interviewer link's token,
// taken out of the address bar (kept per interview, as the editor page does). Built as a small script
// of its own (static/review-load-<hash>.js, ~2 KB), which review.html loads ahead of the page's bundle
// (0.76 MB with Ace): the requests start as soon as it has arrived, not once the whole bundle has been
// downloaded and parsed. It leaves what it started in `window.__duetReviewPrefetch`; the bundle, which
// imports this module first, takes that if it is there and otherwise starts the same itself (the
// small script missing or failed: the page still works, only later).
import { CODE_RE, getHistory, getRecord, normalizeCode } from '../api.js';
import { linkToken, takeLinkTokenFromUrl } from '../credentials.js';

function codeFromPath() {
  const m = /^\/review\/([^/]+)\/?$/.exec(window.location.pathname);
  if (!m) return null;
  let raw;
  try {
    raw = decodeURIComponent(m[1]);
  } catch {
    return null;
  }
  const code = normalizeCode(raw);
  return CODE_RE.test(code) ? code : null;
}

function start() {
  const code = codeFromPath();
  const fragment = takeLinkTokenFromUrl(code);
  const token = code ? fragment ?? linkToken(code) : null;
  const answers = code && token ? Promise.all([getRecord(code, token), getHistory(code, 'code', token)]) : null;
  // Handled by the page; never an unhandled rejection meanwhile.
  answers?.catch(() => {});
  return { code, token, answers, started: performance.now() };
}

/**
 * `{code, token, answers: Promise<[record, history]>|null, started}`: from the small script if it ran
 * (`started`: when it did, in ms since the navigation began), else started now.
 */
export const loading = window.__duetReviewPrefetch ?? (window.__duetReviewPrefetch = start());
