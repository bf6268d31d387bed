// Sign-in state of this tab: the token (sessionStorage: it ends with the tab, never shared with other sites),
// whom it belongs to, and the way to the sign-in page. The server enforces every permission; this only asks.

const TOKEN_KEY = 'hoichan.token';

/** @typedef {{username: string, displayName: string, role: string, facility: string, specialties: string[]}} User */
/** @typedef {{state: 'none'|'valid'|'rejected'|'unknown', user: User|null}} Who */

/** @returns {string|null} */
export function getToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

/** @param {string} token */
export function setToken(token) {
  try {
    sessionStorage.setItem(TOKEN_KEY, token);
  } catch { /* storage disabled: the token still works for this page through the URL */ }
}

export function signOut() {
  try {
    sessionStorage.removeItem(TOKEN_KEY);
  } catch { /* nothing stored */ }
}

/**
 * A link may carry a sign-in as `?token=…`: keep it for this tab and take it out of the address bar, so the
 * token is not copied along with the room link or left in the browser history.
 */
export function adoptTokenFromUrl() {
  const url = new URL(location.href);
  const token = url.searchParams.get('token');
  if (!token) return;
  setToken(token);
  url.searchParams.delete('token');
  history.replaceState(null, '', url);
}

/** @param {string} token */
function bearer(token) {
  return { Authorization: `Bearer ${token}` };
}

/**
 * Whom the stored token belongs to. `rejected`: the server refused it (expired, revoked, forged): it is dropped.
 * `unknown`: the server could not be asked; the token is kept and the connection will tell.
 * @returns {Promise<Who>}
 */
export async function whoAmI() {
  const token = getToken();
  if (!token) return { state: 'none', user: null };
  try {
    const res = await fetch('/api/me', { headers: bearer(token) });
    if (res.ok) return { state: 'valid', user: (await res.json()).user };
    if (res.status === 401) {
      signOut();
      return { state: 'rejected', user: null };
    }
  } catch { /* offline or server down */ }
  return { state: 'unknown', user: null };
}

/** Whether this server lets people without an account join rooms (true when it cannot be asked: it will say). */
export async function guestsAllowed() {
  try {
    const res = await fetch('/api/login');
    if (res.ok) return (await res.json()).allowGuests === true;
  } catch { /* fall through */ }
  return true;
}

/**
 * @param {string} username
 * @param {string} password
 * @returns {Promise<{ok: true, user: User} | {ok: false, code: string, retryAfter?: number}>}
 */
export async function signIn(username, password) {
  let res;
  try {
    res = await fetch('/api/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ username, password }),
    });
  } catch {
    return { ok: false, code: 'network' };
  }
  const body = await res.json().catch(() => ({}));
  if (res.ok) {
    setToken(body.token);
    return { ok: true, user: body.user };
  }
  return { ok: false, code: body?.error?.code ?? 'unknown', retryAfter: Number(res.headers.get('Retry-After')) || 0 };
}

/** The sign-in page, coming back to `next` (default: this page) afterwards. */
export function loginUrl(next = location.pathname + location.search) {
  return `/login?next=${encodeURIComponent(next)}`;
}

/**
 * Where to go after signing in: only a path on this server, never another site (`//evil.example`, `https://…`).
 * @param {string|null} next
 */
export function safeNext(next) {
  return next && /^\/(?![/\\])/.test(next) ? next : '/';
}
