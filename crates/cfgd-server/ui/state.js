// What the console knows right now, shared by its pages, and what the
// token may do in the namespace open (from GET /v1/whoami).

export const state = {
  who: null, // {auth, name, scopes}
  ns: null,
  values: new Map(), // name -> {name, value, secret, revision, version}
  live: null, // {ns, controller}: the values' stream
  flagLive: null, // the flags' stream, while the flags page is open
  flagView: null, // {table, detail, selected, revisions} of the flags page
  editor: null, // {name, base, moved} of the open editor
  onChange: null, // what the page open does with a change of a value
};

function scope() {
  if (!state.who || !state.who.auth) return "admin";
  const s = state.who.scopes || {};
  return s[state.ns] || s["*"] || null;
}
export const canWrite = () => ["write", "secrets", "admin"].includes(scope());
export const canReadSecrets = () => ["secrets", "admin"].includes(scope());
export const canAdmin = () => scope() === "admin";
