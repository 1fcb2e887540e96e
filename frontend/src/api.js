// The session REST API (docs/PROTOCOL.md, seed endpoints): create and look up interviews.

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
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function request(method, url, body) {
  let res;
  try {
    res = await fetch(url, {
      method,
      headers: body ? { 'Content-Type': 'application/json', Accept: 'application/json' } : { Accept: 'application/json' },
      body: body ? JSON.stringify(body) : undefined,
      credentials: 'same-origin',
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
    throw new ApiError(
      res.status,
      err?.code ?? `http_${res.status}`,
      err?.message ?? `The server answered ${res.status} ${res.statusText}.`,
    );
  }
  return data;
}

/**
 * POST /api/session {language, title} → 201 {id, session_code, code, language, title, created_at}
 * (the seed's names: `session_code` is the interview's code, `code` its current text).
 */
export function createSession({ language, title }) {
  return request('POST', '/api/session', { language, title: title || '' });
}

/** GET /api/session/<code> → 200 {id, session_code, code, language, title, ...}; 404 {error: {code, message}} */
export function getSession(code) {
  return request('GET', `/api/session/${encodeURIComponent(code)}`);
}
