// The session: the access token lives only in this module's variable (never
// in localStorage or sessionStorage); the refresh token is an HttpOnly
// cookie the gateway sets on /api/v1/session, which this script cannot read.
const CSRF = { 'X-Audiomill-CSRF': '1' };
let token = null;
let expiresAt = 0;
let user = null; // {email, emailVerified}
let timer = null;
const listeners = [];

/** ApiError is a refusal of the API: status, code and message of its JSON body. */
export class ApiError extends Error {
  constructor(status, code, message) { super(message || code || `HTTP ${status}`); this.status = status; this.code = code; }
}

async function failure(resp) {
  let code = '', message = '';
  try { const b = await resp.json(); code = b.error?.code || ''; message = b.error?.message || ''; } catch { /* not JSON */ }
  return new ApiError(resp.status, code, message);
}

function changed() { for (const f of listeners) f(user); }

function adopt(body) {
  token = body.access_token;
  expiresAt = Date.now() + body.expires_in * 1000;
  user = { email: body.email, emailVerified: !!body.email_verified };
  clearTimeout(timer);
  // Refresh a minute before expiry (or at 80 % of a short lifetime).
  const lead = Math.min(60, body.expires_in * 0.2) * 1000;
  timer = setTimeout(() => { refresh().catch(() => {}); }, Math.max(1000, body.expires_in * 1000 - lead));
  changed();
}

function drop() {
  token = null; expiresAt = 0; user = null; clearTimeout(timer); changed();
}

/** current returns the signed-in user, or null. */
export function current() { return user; }

/** onChange calls f(user or null) whenever the session changes. */
export function onChange(f) { listeners.push(f); }

/** login opens a session. */
export async function login(email, password) {
  const resp = await fetch('/api/v1/session', {
    method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/json', ...CSRF },
    body: JSON.stringify({ email, password }),
  });
  if (!resp.ok) throw await failure(resp);
  adopt(await resp.json());
}

let refreshing = null;
/**
 * refresh trades the cookie for a new access token (and a rotated cookie).
 * Tabs take turns (a Web Lock), so two never present the same refresh
 * token, which auth would take for theft. Resolves false when there is no
 * session.
 */
export function refresh() {
  if (refreshing) return refreshing;
  const run = async () => {
    const resp = await fetch('/api/v1/session/refresh', { method: 'POST', credentials: 'same-origin', headers: CSRF });
    if (resp.status === 401 || resp.status === 403) { drop(); return false; }
    if (!resp.ok) throw await failure(resp);
    adopt(await resp.json());
    return true;
  };
  const locked = navigator.locks ? navigator.locks.request('audiomill-session', run) : run();
  refreshing = locked.finally(() => { refreshing = null; });
  return refreshing;
}

/** logout ends this session (everywhere: every session of the user). */
export async function logout(everywhere = false) {
  const headers = { ...CSRF };
  if (token) headers.Authorization = `Bearer ${token}`;
  const resp = await fetch(`/api/v1/session${everywhere ? '?all=true' : ''}`, { method: 'DELETE', credentials: 'same-origin', headers });
  drop();
  if (!resp.ok && resp.status !== 401) throw await failure(resp);
}

/** bearer returns a valid access token, refreshing first when it is about to expire. */
export async function bearer() {
  if (token && Date.now() < expiresAt - 30000) return token;
  if (!(await refresh())) throw new ApiError(401, 'unauthorized', 'logged out');
  return token;
}

/** api calls path with the bearer token; JSON in and out; throws ApiError. */
export async function api(path, { method = 'GET', body, headers = {}, signal } = {}) {
  const h = { ...headers, Authorization: `Bearer ${await bearer()}` };
  if (body !== undefined) h['Content-Type'] = 'application/json';
  const resp = await fetch(path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body), signal });
  if (!resp.ok) throw await failure(resp);
  return resp.status === 204 ? null : resp.json();
}

/** signup asks for an account; the answer is the same whether the address has one. */
export async function signup(email, password) {
  const resp = await fetch('/api/v1/users', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ email, password }) });
  if (!resp.ok) throw await failure(resp);
}

/** verify opens the emailed verification link's token. */
export async function verify(tokenParam) {
  const resp = await fetch(`/api/v1/verify?token=${encodeURIComponent(tokenParam)}`, { headers: { Accept: 'application/json' } });
  if (!resp.ok) throw await failure(resp);
}
