// The session REST API (README "REST API"): create and look up interviews, join one (a participant
// token), and the interviewer's actions.

export const LANGUAGES = [
  { id: 'javascript', label: 'JavaScript' },
  { id: 'python', label: 'Python' },
  { id: 'html', label: 'HTML/CSS' },
];

export function languageLabel(id) {
  return LANGUAGES.find((l) => l.id === id)?.label ?? id;
}

/** Session codes: 8 characters from 2-9 and A-Z without I, L, O, U (case-insensitive). */
export const CODE_RE = /^[23456789ABCDEFGHJKMNPQRSTVWXYZ]{8}$/;

export function normalizeCode(raw) {
  return String(raw ?? '')
    .trim()
    .replace(/[\s-]/g, '')
    .toUpperCase();
}

export class ApiError extends Error {
  /** `retryAfter`: seconds from a `Retry-After` header (429, 503), else null. */
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

async function request(method, url, body, { token } = {}) {
  let res;
  const headers = { Accept: 'application/json' };
  if (body) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  try {
    res = await fetch(url, {
      method,
      headers,
      body: body ? JSON.stringify(body) : undefined,
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch {
    throw new ApiError(0, 'network', 'Duet cannot be reached. Check your connection and try again.');
  }
  let data = null;
  try {
    data = await res.json();
  } catch {
    /* not JSON */
  }
  if (!res.ok) {
    const err = data && data.error;
    const retry = Number.parseInt(res.headers.get('Retry-After') ?? '', 10);
    throw new ApiError(
      res.status,
      err?.code ?? `http_${res.status}`,
      err?.message ?? `The server answered ${res.status} ${res.statusText}.`,
      Number.isFinite(retry) && retry >= 0 ? retry : null,
    );
  }
  return data;
}

/**
 * POST /api/session {language, title, lobby?, password?} → 201 {id, session_code, code, language, title,
 * created_at, state, …, interviewer_token, links: {interviewer, candidate}} (the seed's names:
 * `session_code` is the interview's code, `code` its current text). `lobby` and `password` are sent
 * only when asked for, so a server that predates them is not sent fields it refuses.
 */
export function createSession({ language, title, lobby = false, password = '' }) {
  const body = { language, title: title || '' };
  if (lobby) body.lobby = true;
  if (password) body.password = password;
  return request('POST', '/api/session', body);
}

/** GET /api/session/<code> → 200 {id, session_code, code, language, title, ...}; 404 {error: {code, message}} */
export function getSession(code) {
  return request('GET', `/api/session/${encodeURIComponent(code)}`);
}

/**
 * POST /api/session/<code>/join {name, password?} → {token, role, user_id, color}. With `linkToken`
 * (the interviewer link's) as `Authorization: Bearer` the role is interviewer and no password is
 * needed; without it, a candidate (a passworded interview answers 401 `password_required` /
 * `invalid_password`, too many tries 429 `rate_limited` with `retryAfter`).
 */
export function joinSession(code, { name, password, linkToken } = {}) {
  const body = { name };
  if (password) body.password = password;
  return request('POST', `/api/session/${encodeURIComponent(code)}/join`, body, { token: linkToken });
}

/**
 * Whether an error from joinSession means the server has no join endpoint (an older server): a 404
 * that is not about the interview, or 405. The page then joins without a token.
 */
export function isMissingEndpoint(err) {
  return (err?.status === 404 && err.code !== 'session_not_found') || err?.status === 405;
}

/**
 * The interview record for the review page (interviewer token only): GET /api/session/<code>/record →
 * {id, session_code, title, language, state, created_at, started_at, ended_at, code, notes,
 * participants, runs, events} (docs/PROTOCOL.md).
 */
export function getRecord(code, token) {
  return request('GET', `/api/session/${encodeURIComponent(code)}/record`, null, { token });
}

/** A document's stored history: GET /api/session/<code>/history?doc=code|notes → {doc, updates: [{seq, at, author, data}]}. */
export function getHistory(code, doc, token) {
  return request('GET', `/api/session/${encodeURIComponent(code)}/history?doc=${encodeURIComponent(doc)}`, null, { token });
}

/** The record as a zip (GET /api/session/<code>/export): resolves with a Blob. */
export async function getExport(code, token) {
  let res;
  try {
    res = await fetch(`/api/session/${encodeURIComponent(code)}/export`, {
      headers: { Authorization: `Bearer ${token}` },
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch {
    throw new ApiError(0, 'network', 'Duet cannot be reached. Check your connection and try again.');
  }
  if (!res.ok) {
    let err = null;
    try {
      err = (await res.json())?.error;
    } catch {
      /* not JSON */
    }
    throw new ApiError(res.status, err?.code ?? `http_${res.status}`, err?.message ?? `The server answered ${res.status}.`);
  }
  return res.blob();
}
