// cfgd's REST API: the bearer token (kept in this tab's sessionStorage) or
// the SSO session's cookie and CSRF token, one fetch wrapper whose errors
// come back as the server worded them, and the reads the console asks the
// server rather than working out itself.

import { enc, encName } from "./dom.js";

const TOKEN_KEY = "cfgd-token";
let token = sessionStorage.getItem(TOKEN_KEY);

export const hasToken = () => !!token;

/** Uses `t` for the calls that follow; kept in the tab once `keep`. */
export function setToken(t, keep = false) {
  token = t;
  if (keep && t) sessionStorage.setItem(TOKEN_KEY, t);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
  token = null;
  csrf = null;
}

// With an SSO session (its cookie is HttpOnly: the browser sends it), the
// token that writes must carry, as GET /v1/whoami gave it.
let csrf = null;
export const setCsrf = (c) => (csrf = c || null);

/** The Authorization header of the token, if there is one. */
export function authHeaders() {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

export class ApiError extends Error {
  constructor(status, code, message, failures) {
    super(message);
    this.status = status;
    this.code = code;
    this.failures = failures || [];
  }
}

/** One REST call; errors come back as the server worded them. `raw`: the
 * body is sent as the text it is (JSON as typed, key order and all). */
export async function api(method, path, { body, headers = {}, raw = false } = {}) {
  const all = { ...authHeaders(), ...headers };
  if (csrf && !token && method !== "GET" && method !== "HEAD") all["X-Cfgd-Csrf"] = csrf;
  if (body !== undefined && !raw) all["Content-Type"] = "application/json";
  const res = await fetch(path, {
    method,
    headers: all,
    body: body === undefined ? undefined : raw ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!res.ok) {
    const e = data && data.error ? data.error : {};
    throw new ApiError(res.status, e.code || String(res.status), e.message || `${res.status} ${res.statusText}`, e.failures);
  }
  return { data, etag: res.headers.get("ETag") };
}

/** The revision an ETag names; 0 without one. */
export const revisionOf = (etag) => Number((etag || "").replace(/^W\//, "").replace(/"/g, "")) || 0;

const ns = (namespace) => `/v1/namespaces/${enc(namespace)}`;

/** What the namespace's policy says of `label` (a name, or flags/NAME):
 * `{name, protected: pattern or null, secret}`. */
export async function policyOf(namespace, label) {
  return (await api("GET", `${ns(namespace)}/policy/${encName(label)}`)).data;
}

/** What storing `text` (JSON as typed) as `name` would change:
 * `[{name, differences}]`, as `POST …/diff` answers. */
export async function diffEdit(namespace, name, text) {
  const document = `{${JSON.stringify(name)}: ${text}}`;
  return (await api("POST", `${ns(namespace)}/diff`, { body: document, raw: true, headers: { "Content-Type": "application/json" } })).data;
}

/** `name` at revision `from` against revision `to` (against its current
 * value without `to`; 0 is "no value"), as `GET …/diff/{name}` answers:
 * `{changes: [{name, differences}], revision}`, the revision of the value
 * compared as after (0 when there is none). */
export async function diffRevisions(namespace, name, from, to) {
  const q = new URLSearchParams({ from: String(from) });
  if (to !== undefined) q.set("to", String(to));
  const { data, etag } = await api("GET", `${ns(namespace)}/diff/${encName(name)}?${q}`);
  return { changes: data, revision: revisionOf(etag) };
}
