// The participant's identity in this browser: a display name and a stable user id, both kept in
// localStorage so a reload or a reconnect keeps the same name, colour and identity.

const NAME_KEY = 'duet.name';
const USER_ID_KEY = 'duet.user_id';
export const MAX_NAME_CHARS = 64;

function storage() {
  try {
    return window.localStorage;
  } catch {
    return null; // storage disabled (privacy settings): identity lives for this page only
  }
}

const memory = new Map();

function get(key) {
  const s = storage();
  try {
    return s ? s.getItem(key) : memory.get(key) ?? null;
  } catch {
    return memory.get(key) ?? null;
  }
}

function set(key, value) {
  memory.set(key, value);
  try {
    storage()?.setItem(key, value);
  } catch {
    /* quota or disabled storage: keep it in memory */
  }
}

/** A random RFC 4122 version 4 UUID (crypto.randomUUID needs a secure context; this does not). */
export function uuid4() {
  if (typeof crypto.randomUUID === 'function' && window.isSecureContext) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function getUserId() {
  let id = get(USER_ID_KEY);
  if (!id || !UUID_RE.test(id)) {
    id = uuid4();
    set(USER_ID_KEY, id);
  }
  return id;
}

/** The server may assign another id (when ours was refused): remember the one it uses. */
export function setUserId(id) {
  if (typeof id === 'string' && UUID_RE.test(id)) set(USER_ID_KEY, id);
}

export function normalizeName(raw) {
  const name = String(raw ?? '')
    .replace(/[\u0000-\u001f\u007f]/g, '')
    .trim();
  return [...name].slice(0, MAX_NAME_CHARS).join('');
}

export function getName() {
  return normalizeName(get(NAME_KEY) ?? '');
}

export function setName(name) {
  const n = normalizeName(name);
  if (n) set(NAME_KEY, n);
  return n;
}

// Handing over from the landing page to the editor page: "show the share dialog for this code".
const SHARE_KEY = 'duet.share';

export function requestShareDialog(code) {
  try {
    sessionStorage.setItem(SHARE_KEY, code);
  } catch {
    /* ignore */
  }
}

export function takeShareDialogRequest(code) {
  try {
    if (sessionStorage.getItem(SHARE_KEY) === code) {
      sessionStorage.removeItem(SHARE_KEY);
      return true;
    }
  } catch {
    /* ignore */
  }
  return false;
}
