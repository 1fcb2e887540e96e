// What this browser holds for each interview, kept in localStorage under the interview's code:
//
// - the interviewer link's token (`duet.link.<CODE>`): it arrives in the link's fragment
//   (`/interview/<CODE>#token=…`, never sent to a server by the browser), is taken from the address
//   bar at once (history.replaceState) and kept, so a reload or another tab is still an interviewer;
// - the participant token (`duet.participant.<CODE>`: `{token, role, user_id, color, link}`) that
//   `POST /api/session/<CODE>/join` exchanged for it — or for a name (and password) for a candidate —
//   so a reload keeps the same identity. `link` is the link token it was obtained with (null for a
//   candidate): a different interviewer link opened later gets a fresh exchange.
//
// Tokens are JWTs; an expired participant token (or one expiring within a minute) is not used.

const LINK_PREFIX = 'duet.link.';
const PARTICIPANT_PREFIX = 'duet.participant.';
/** A participant token that expires sooner than this is exchanged again rather than used. */
const EXPIRY_MARGIN_S = 60;

const memory = new Map();

function storage() {
  try {
    return window.localStorage;
  } catch {
    return null;
  }
}

function get(key) {
  try {
    const s = storage();
    if (s) return s.getItem(key);
  } catch {
    /* fall through */
  }
  return memory.get(key) ?? null;
}

function set(key, value) {
  memory.set(key, value);
  try {
    storage()?.setItem(key, value);
  } catch {
    /* quota or disabled storage: this page keeps it in memory */
  }
}

function remove(key) {
  memory.delete(key);
  try {
    storage()?.removeItem(key);
  } catch {
    /* ignore */
  }
}

/** The `exp` claim of a JWT (seconds since the epoch), or null when it cannot be read. */
export function tokenExpiry(token) {
  try {
    const part = String(token).split('.')[1];
    if (!part) return null;
    const json = atob(part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '='));
    const exp = JSON.parse(json).exp;
    return typeof exp === 'number' ? exp : null;
  } catch {
    return null;
  }
}

/**
 * Takes the interviewer link's token out of the address bar (`#token=…`): keeps it for `code` (unless
 * `code` is null: a link without a valid code) and replaces the URL with one without it. Returns the
 * token, or null when the URL has none.
 */
export function takeLinkTokenFromUrl(code) {
  const hash = window.location.hash.replace(/^#/, '');
  if (!hash) return null;
  const params = new URLSearchParams(hash);
  const token = params.get('token');
  params.delete('token');
  const rest = params.toString();
  const clean = `${window.location.pathname}${window.location.search}${rest ? `#${rest}` : ''}`;
  window.history.replaceState(window.history.state, '', clean);
  if (!token) return null;
  if (code) setLinkToken(code, token);
  return token;
}

export function linkToken(code) {
  return get(LINK_PREFIX + code);
}

export function setLinkToken(code, token) {
  if (typeof token === 'string' && token) set(LINK_PREFIX + code, token);
}

export function forgetLinkToken(code) {
  remove(LINK_PREFIX + code);
}

/**
 * The participant token kept for `code` if it was obtained with `link` (the interviewer link's token,
 * or null for a candidate) and is not about to expire; else null.
 */
export function storedParticipant(code, link) {
  let p;
  try {
    p = JSON.parse(get(PARTICIPANT_PREFIX + code) ?? 'null');
  } catch {
    return null;
  }
  if (!p || typeof p.token !== 'string' || !p.token) return null;
  if ((p.link ?? null) !== (link ?? null)) return null;
  const exp = tokenExpiry(p.token);
  if (exp !== null && exp - EXPIRY_MARGIN_S < Date.now() / 1000) return null;
  return p;
}

export function storeParticipant(code, { token, role, user_id, color }, link) {
  set(PARTICIPANT_PREFIX + code, JSON.stringify({ token, role, user_id, color, link: link ?? null }));
}

export function forgetParticipant(code) {
  remove(PARTICIPANT_PREFIX + code);
}
