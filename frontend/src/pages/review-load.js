// The review page's first act, before the rest of its bundle (Ace above all) is evaluated: imported
// first by pages/review.js, so the record and the history are on their way while the editor's code
// loads. Takes the interviewer link's token out of the address bar (kept per interview, as the editor
// page does).
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

/** `{code, token, answers: Promise<[record, history]>|null, started}` */
export const loading = start();
