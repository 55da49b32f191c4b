// The JSON API client. The API is the only path to the data: every page
// reads and writes through api() on the same origin, under <prefix>/v1,
// where <prefix> is what precedes /console/ in the page's path.
import { store, role, signOut } from './session.js';

const base = (location.pathname.match(/^(.*?)\/console(\/|$)/) || [null, ''])[1];
export const API = base + '/v1';

export class ApiError extends Error {
  constructor(status, code, message, field) { super(message); this.status = status; this.code = code; this.field = field || ''; }
}

export async function api(method, path, body, headers) {
  const init = { method, headers: Object.assign({ Accept: 'application/json' }, headers || {}) };
  const tok = store.getItem('cm.token');
  if (tok) init.headers.Authorization = 'Bearer ' + tok;
  if (body !== undefined) { init.headers['Content-Type'] = 'application/json'; init.body = JSON.stringify(body); }
  let res;
  try { res = await fetch(API + path, init); } catch (e) {
    throw new ApiError(0, 'network', 'The API did not answer (' + e.message + '); try again.');
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { /* not JSON */ }
  if (!res.ok) {
    const e = (data && data.error) || {};
    const err = new ApiError(res.status, e.code || 'http_' + res.status, e.message || res.status + ' ' + res.statusText, e.field);
    if (res.status === 401 && role()) signOut('Signed out: ' + err.message);
    throw err;
  }
  return data;
}

export const get = (path) => api('GET', path);

// key is a fresh Idempotency-Key, made per attempt.
export const key = () => (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random().toString(16).slice(2));
