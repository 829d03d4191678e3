// The Tokens API, as the console calls it: a session cookie for every
// request, and the session's CSRF token on every change.

/** An error answer of the API: {"error": {"code", "field", "message"}}. */
export class APIError extends Error {
  constructor(status, code, field, message) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field || '';
  }
}

let csrf = '';
let sessionEnded = () => {};

/** Sets what happens when the session has ended (a 401 on a call other than sign-in). */
export function onSessionEnd(fn) {
  sessionEnded = fn;
}

/** Sets the CSRF token (kept in memory only, never in storage). */
export function setCSRF(token) {
  csrf = token || '';
}

/**
 * Calls the API and returns the decoded JSON answer (null for 204).
 * Throws an APIError for an error answer.
 */
export async function api(method, path, body) {
  try {
    return await call(method, path, body);
  } catch (err) {
    if (err.status === 403 && err.field === 'X-CSRF-Token') {
      // The CSRF token is stale (another tab signed in again): fetch the
      // session's and try once more.
      const who = await call('GET', '/v1/session');
      setCSRF(who.csrf_token);
      return call(method, path, body);
    }
    if (err.status === 401 && path !== '/v1/session') {
      sessionEnded();
    }
    throw err;
  }
}

async function call(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET' && method !== 'HEAD') {
    headers['X-CSRF-Token'] = csrf;
  }
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    throw new APIError(0, 'unavailable', '', 'Tollgate could not be reached. Check your connection and try again.');
  }
  if (res.status === 204) {
    return null;
  }
  let data = null;
  try {
    data = await res.json();
  } catch (err) {
    data = null;
  }
  if (!res.ok) {
    const e = (data && data.error) || {};
    throw new APIError(res.status, e.code || 'internal', e.field, e.message || `The request failed (HTTP ${res.status}).`);
  }
  return data;
}

/** Lists every token the session may see, oldest first, following `next`. */
export async function listTokens() {
  const out = [];
  let after = '';
  for (;;) {
    const q = new URLSearchParams({ limit: '1000' });
    if (after) {
      q.set('after', after);
    }
    const page = await api('GET', `/v1/tokens?${q}`);
    out.push(...(page.tokens || []));
    if (!page.next) {
      return out;
    }
    after = page.next;
  }
}

/** Returns the token's credits per day for the last `days` days. */
export function tokenUsage(id, days) {
  return api('GET', `/v1/tokens/${encodeURIComponent(id)}/usage?days=${days}`);
}
