// cfgd console: a page over cfgd's REST API, served by cfgd itself. No
// framework and no build step: what is here is what the browser runs.
// Every rule (schemas, the policy, approvals) is the server's; the page
// only shows what the server says.

const TOKEN_KEY = "cfgd-token";

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  who: null, // {auth, name, scopes}
  namespaces: [],
  ns: null,
  values: new Map(), // name -> {value, revision, version}
  policy: null,
  live: null, // {ns, controller}: the values' stream
  flagLive: null, // the flags' stream, while the flags page is open
  flagView: null, // {table, detail, selected, revisions} of the flags page
  editor: null, // {name, base, baseValue}
  view: null, // the function that renders the current page
};

// ---------------------------------------------------------------- helpers

/** Builds an element: h("a", {href: "#"}, "text", child, ...). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

const $ = (id) => document.getElementById(id);
const pretty = (v) => JSON.stringify(v, null, 2);
const compact = (v) => JSON.stringify(v);
const enc = encodeURIComponent;
const encName = (name) => name.split("/").map(enc).join("/");
let idSeq = 0;
const uid = (p) => `${p}-${++idSeq}`;

function when(ms) {
  return ms ? new Date(ms).toLocaleString() : "";
}

class ApiError extends Error {
  constructor(status, code, message, failures) {
    super(message);
    this.status = status;
    this.code = code;
    this.failures = failures || [];
  }
}

/** One REST call; errors come back as the server worded them. */
async function api(method, path, { body, headers = {}, raw = false } = {}) {
  const h2 = { ...headers };
  if (state.token) h2.Authorization = `Bearer ${state.token}`;
  if (body !== undefined && !raw) h2["Content-Type"] = "application/json";
  const res = await fetch(path, {
    method,
    headers: h2,
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

function showError(e) {
  $("error").textContent = e ? (e.message || String(e)).split("\n")[0] : "";
}

function announce(text) {
  $("announce").textContent = text;
}

function scope() {
  if (!state.who || !state.who.auth) return "admin";
  const s = state.who.scopes || {};
  return s[state.ns] || s["*"] || null;
}
const canWrite = () => ["write", "secrets", "admin"].includes(scope());
const canReadSecrets = () => ["secrets", "admin"].includes(scope());
const canAdmin = () => scope() === "admin";

function matches(pattern, label) {
  return pattern.endsWith("*") ? label.startsWith(pattern.slice(0, -1)) : pattern === label;
}
function protectedBy(label) {
  const p = state.policy;
  return p ? (p.protected || []).find((x) => matches(x, label)) : undefined;
}

/** Structural diff, as the server's: objects key by key, arrays index by
 * index, JSON Pointer paths. */
function diff(a, b, path = "") {
  if (a === undefined && b === undefined) return [];
  if (a === undefined) return [{ op: "added", path, value: b }];
  if (b === undefined) return [{ op: "removed", path, value: a }];
  const obj = (x) => x !== null && typeof x === "object" && !Array.isArray(x);
  if (obj(a) && obj(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    return keys.flatMap((k) => diff(a[k], b[k], `${path}/${k.replace(/~/g, "~0").replace(/\//g, "~1")}`));
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    const n = Math.max(a.length, b.length);
    const out = [];
    for (let i = 0; i < n; i++) out.push(...diff(i < a.length ? a[i] : undefined, i < b.length ? b[i] : undefined, `${path}/${i}`));
    return out;
  }
  return compact(a) === compact(b) ? [] : [{ op: "changed", path, from: a, to: b }];
}

function diffLine(d) {
  const at = d.path || "/";
  if (d.op === "added") return h("li", { class: "added" }, `+ ${at}: ${compact(d.value)}`);
  if (d.op === "removed") return h("li", { class: "removed" }, `- ${at}: ${compact(d.value)}`);
  return h("li", { class: "changed" }, `~ ${at}: ${compact(d.from)} → ${compact(d.to)}`);
}

/** A list of differences; `named` is [{name, differences}] as the server gives. */
function diffList(differences, label) {
  if (!differences.length) return h("p", { class: "muted" }, "No differences.");
  return h("ul", { class: "diff", "aria-label": label }, differences.map(diffLine));
}
function namedDiff(named, label) {
  if (!named.length) return h("p", { class: "muted" }, "No differences.");
  return h(
    "ul",
    { class: "diff", "aria-label": label },
    named.flatMap((n) => [h("li", { class: "name" }, n.name), ...n.differences.map(diffLine)]),
  );
}

/** A confirmation in a modal dialog; resolves true when confirmed. */
function confirmDialog(title, text, action) {
  return new Promise((resolve) => {
    const titleId = uid("dlg");
    const dialog = h(
      "dialog",
      { "aria-labelledby": titleId },
      h("h2", { id: titleId }, title),
      h("p", {}, text),
      h(
        "div",
        { class: "row" },
        h("button", { class: "danger", onclick: () => close(true) }, action),
        h("button", { class: "secondary", onclick: () => close(false) }, "Cancel"),
      ),
    );
    function close(ok) {
      dialog.close();
      dialog.remove();
      resolve(ok);
    }
    dialog.addEventListener("cancel", () => resolve(false));
    document.body.append(dialog);
    dialog.showModal();
  });
}

function debounce(fn, ms) {
  let t;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
}

/** Replaces `el`'s children, skipping the absent ones (null, false). */
function fill(el, ...nodes) {
  el.replaceChildren(...nodes.flat().filter((n) => n !== null && n !== undefined && n !== false));
}

function render(...nodes) {
  fill($("main"), ...nodes);
}

// ---------------------------------------------------------------- routing

function route() {
  showError(null);
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (state.who === null) return signIn();
  if (parts[0] !== "ns" || !parts[1]) return namespacesPage();
  const ns = parts[1];
  const page = parts[2] || "config";
  const rest = parts.slice(3).join("/");
  if (page !== "flags") stopFlagLive();
  enter(ns).then(() => {
    nav(page);
    const pages = {
      config: () => configPage(rest || null),
      history: () => historyPage(rest),
      flags: () => flagsPage(rest || null),
      audit: () => auditPage(),
      releases: () => releasesPage(rest || null),
      requests: () => requestsPage(rest || null),
      schemas: () => schemasPage(),
    };
    (pages[page] || pages.config)().catch(showError);
  }, showError);
}

function nav(current) {
  const ns = state.ns;
  const items = [
    ["config", "Config"],
    ["flags", "Flags"],
    ["audit", "Audit log"],
    ["releases", "Releases"],
    ["requests", "Change requests"],
    ["schemas", "Schemas"],
  ];
  fill($("nav"), 
    h("a", { href: "#/" }, "Namespaces"),
    ...(ns
      ? items.map(([p, label]) =>
          h("a", { href: `#/ns/${enc(ns)}/${p}`, "aria-current": current === p || (current === "history" && p === "config") ? "page" : null }, label),
        )
      : []),
  );
}

function whoBar() {
  const who = state.who;
  if (!who) return fill($("who"), );
  const parts = [h("span", {}, who.auth ? `Signed in as ${who.name}` : "No sign-in (--no-auth)")];
  if (who.auth)
    parts.push(
      h("button", {
        class: "secondary",
        onclick: () => {
          sessionStorage.removeItem(TOKEN_KEY);
          state.token = null;
          state.who = null;
          stopLive();
          location.hash = "#/";
          whoBar();
          route();
        },
      }, "Sign out"),
    );
  fill($("who"), ...parts);
}

// ---------------------------------------------------------------- sign-in

async function start() {
  try {
    const { data } = await api("GET", "/v1/whoami");
    state.who = data;
  } catch (e) {
    if (e.status !== 401) showError(e);
    state.who = null;
    if (state.token) {
      sessionStorage.removeItem(TOKEN_KEY);
      state.token = null;
    }
  }
  whoBar();
  route();
}

function signIn() {
  nav(null);
  const input = h("input", { id: "token", type: "password", autocomplete: "current-password", required: true });
  const form = h(
    "form",
    {
      class: "signin panel",
      onsubmit: async (ev) => {
        ev.preventDefault();
        state.token = input.value.trim();
        try {
          const { data } = await api("GET", "/v1/whoami");
          sessionStorage.setItem(TOKEN_KEY, state.token);
          state.who = data;
          whoBar();
          route();
        } catch (e) {
          state.token = null;
          showError(e);
        }
      },
    },
    h("h1", {}, "Sign in to cfgd"),
    h("label", { for: "token" }, "Token"),
    input,
    h("p", { class: "muted" }, "The bearer token from cfgd's settings. It is kept in this tab only."),
    h("button", { type: "submit" }, "Sign in"),
  );
  render(form);
  input.focus();
}

// ---------------------------------------------------------------- namespaces

async function namespacesPage() {
  stopLive();
  state.ns = null;
  nav(null);
  const { data } = await api("GET", "/v1/namespaces");
  state.namespaces = data;
  render(
    h("h1", {}, "Namespaces"),
    data.length
      ? h(
          "div",
          { class: "table-wrap", tabindex: 0, role: "region", "aria-label": "Namespaces" },
          h(
            "table",
            {},
            h("thead", {}, h("tr", {}, h("th", {}, "Namespace"), h("th", {}, "Values"), h("th", {}, "Flags"), h("th", {}, "Access"))),
            h(
              "tbody",
              {},
              data.map((n) =>
                h("tr", {}, h("td", {}, h("a", { href: `#/ns/${enc(n.name)}/config` }, n.name)), h("td", {}, n.values), h("td", {}, n.flags), h("td", {}, n.scope)),
              ),
            ),
          ),
        )
      : h("p", {}, "No namespace you may read holds anything yet."),
  );
}

/** Switches to namespace `ns`: its values, its policy, and its live stream. */
async function enter(ns) {
  if (state.ns === ns && state.live) return;
  stopLive();
  state.ns = ns;
  state.values = new Map();
  state.editor = null;
  await startLive(ns);
  const [{ data: list }, { data: policy }] = await Promise.all([
    api("GET", `/v1/namespaces/${enc(ns)}/config`),
    api("GET", `/v1/namespaces/${enc(ns)}/policy`),
  ]);
  for (const e of list) {
    const known = state.values.get(e.name);
    if (!known || known.revision < e.revision) state.values.set(e.name, e);
  }
  state.policy = policy;
}

// ---------------------------------------------------------------- live

function stopLive() {
  if (state.live) state.live.controller.abort();
  state.live = null;
  stopFlagLive();
}

function stopFlagLive() {
  if (state.flagLive) state.flagLive.abort();
  state.flagLive = null;
}

/** Follows the namespace's values over SSE. */
function startLive(ns) {
  const controller = new AbortController();
  state.live = { ns, controller };
  return follow(`/v1/namespaces/${enc(ns)}/watch`, controller, onEvent);
}

/** Follows an SSE stream with fetch (EventSource cannot send the token),
 * resuming with Last-Event-ID after a loss, with a banner while it is
 * lost. Resolves once the first connection is open (or failed). */
function follow(path, controller, handle) {
  let opened;
  const first = new Promise((r) => (opened = r));
  const cursor = { lastId: null };
  (async () => {
    let lost = false;
    while (!controller.signal.aborted) {
      try {
        const headers = {};
        if (state.token) headers.Authorization = `Bearer ${state.token}`;
        if (cursor.lastId) headers["Last-Event-ID"] = cursor.lastId;
        const res = await fetch(path, { headers, signal: controller.signal });
        if (res.status >= 400 && res.status < 500) {
          // Refused (a token that may not read it): retrying will not help.
          opened();
          const body = await res.json().catch(() => ({}));
          return showError(new Error(body.error?.message || `watch answered ${res.status}`));
        }
        if (!res.ok) throw new Error(`watch answered ${res.status}`);
        opened();
        if (lost) {
          fill($("banner"));
          announce("Live updates resumed.");
          lost = false;
        }
        await readEvents(res.body, cursor, handle);
      } catch {
        if (controller.signal.aborted) return;
      }
      if (controller.signal.aborted) return;
      opened();
      lost = true;
      $("banner").textContent = "Connection to cfgd lost; reconnecting…";
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();
  return first;
}

async function readEvents(body, cursor, handle) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let ev = { event: "message", data: "", id: null };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let nl;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, nl).replace(/\r$/, "");
      buffer = buffer.slice(nl + 1);
      if (line === "") {
        if (ev.id !== null) cursor.lastId = ev.id;
        if (ev.data) handle(ev);
        ev = { event: "message", data: "", id: null };
      } else if (!line.startsWith(":")) {
        const i = line.indexOf(":");
        const field = i < 0 ? line : line.slice(0, i);
        const val = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
        if (field === "data") ev.data += (ev.data ? "\n" : "") + val;
        else if (field === "event") ev.event = val;
        else if (field === "id") ev.id = val;
      }
    }
  }
}

function onEvent(ev) {
  let change;
  try {
    change = JSON.parse(ev.data);
  } catch {
    return;
  }
  if (ev.event === "reset") {
    state.values.clear();
    return;
  }
  const known = state.values.get(change.name);
  if (known && known.revision >= change.revision && !change.resync) return;
  if (change.kind === "delete") state.values.delete(change.name);
  else state.values.set(change.name, { name: change.name, value: change.value, secret: !!change.secret, revision: change.revision, version: (known?.version || 0) + 1 });
  announce(`${change.name} changed (revision ${change.revision}).`);
  if (state.onChange) state.onChange(change);
}

// ---------------------------------------------------------------- config

async function lastChange(name) {
  const { data } = await api("GET", `/v1/namespaces/${enc(state.ns)}/audit?prefix=${enc(name)}&limit=20`);
  return data.find((r) => r.names.some((n) => n.name === name && n.kind === "config"));
}

async function configPage(selected) {
  const ns = state.ns;
  const search = h("input", { id: "search", type: "search", placeholder: "name or prefix" });
  const list = h("ul", { class: "names", "aria-label": "Names" });
  const detail = h("section", { class: "detail", "aria-label": "Value" });
  const drawList = () => {
    const q = search.value.trim().toLowerCase();
    const names = [...state.values.keys()].sort().filter((n) => n.toLowerCase().includes(q));
    fill(list, 
      ...names.map((n) =>
        h(
          "li",
          { "data-name": n },
          h("a", { href: `#/ns/${enc(ns)}/config/${encName(n)}`, "aria-current": n === selected ? "true" : null }, n),
          h("span", { class: "rev" }, `rev ${state.values.get(n).revision}`),
        ),
      ),
    );
    if (!names.length) list.append(h("li", { class: "muted" }, q ? "No name matches." : "No values yet."));
  };
  search.addEventListener("input", drawList);
  drawList();
  const head = h("div", { class: "row" }, h("h1", {}, `Config · ${ns}`));
  if (canWrite())
    head.append(
      h("button", { class: "secondary", onclick: () => newValue(detail) }, "New value"),
    );
  render(head, h("div", { class: "split" }, h("div", {}, h("label", { for: "search" }, "Search names"), search, list), detail));
  state.onChange = (change) => {
    drawList();
    const row = list.querySelector(`li[data-name="${CSS.escape(change.name)}"]`);
    if (row) row.classList.add("changed-now");
    setTimeout(() => row && row.classList.remove("changed-now"), 3000);
    if (change.name === selected) {
      if (state.editor && state.editor.name === selected) editorMoved(change);
      else showValue(detail, selected);
    }
  };
  if (selected) await showValue(detail, selected);
  else detail.append(h("p", { class: "muted" }, "Pick a name to see its value."));
}

async function showValue(detail, name) {
  const entry = state.values.get(name);
  if (!entry) {
    fill(detail, h("h2", {}, name), h("p", {}, "This name holds no value."));
    return;
  }
  const meta = h(
    "dl",
    { class: "meta" },
    h("dt", {}, "Revision"),
    h("dd", {}, entry.revision),
    h("dt", {}, "Version"),
    h("dd", {}, entry.version),
  );
  const actions = h("div", { class: "row" });
  if (canWrite()) actions.append(h("button", { onclick: () => editValue(detail, name) }, "Edit"));
  actions.append(h("a", { class: "button secondary", href: `#/ns/${enc(state.ns)}/history/${encName(name)}` }, "History"));
  const prot = protectedBy(name);
  // A secret's value is shown only when asked, to a token that may see it.
  const value = h("pre", { tabindex: 0, "aria-label": `Value of ${name}` }, entry.secret ? "Secret: hidden" : pretty(entry.value));
  if (entry.secret && canReadSecrets())
    actions.prepend(
      h("button", {
        class: "secondary",
        onclick: async (ev) => {
          try {
            const { data } = await api("GET", `/v1/namespaces/${enc(state.ns)}/config/${encName(name)}`);
            value.textContent = pretty(data);
            ev.target.remove();
          } catch (e) {
            showError(e);
          }
        },
      }, "Reveal secret"),
    );
  fill(detail, 
    h("h2", {}, name),
    meta,
    prot ? h("p", { class: "notice" }, `Protected by the policy (${prot}): changes go through a change request.`) : null,
    entry.secret ? h("p", { class: "notice" }, "A secret: stored encrypted; its value is shown only when asked for.") : null,
    value,
    actions,
  );
  try {
    const record = await lastChange(name);
    if (record && state.values.get(name) === entry) {
      meta.append(
        h("dt", {}, "Last change"),
        h("dd", {}, `${record.actor} via ${record.via}, ${when(record.time_ms)}${record.message ? ` — ${record.message}` : ""}`),
      );
    }
  } catch (e) {
    showError(e);
  }
}

function newValue(detail) {
  const input = h("input", { id: "new-name", required: true });
  fill(detail, 
    h("h2", {}, "New value"),
    h("label", { for: "new-name" }, "Name"),
    input,
    h("div", { class: "row" }, h("button", { onclick: () => input.value.trim() && editValue(detail, input.value.trim(), true) }, "Continue")),
  );
  input.focus();
}

/** The JSON editor: syntax and schema checked as one types (the schema
 * through the server's dry run), the diff against what is stored, then
 * publish with a message, compare-and-set on the revision the edit began
 * from. */
function editValue(detail, name, fresh = false) {
  const entry = state.values.get(name);
  const base = entry ? entry.revision : 0;
  // A secret's editor starts empty: its value is never put in the page.
  const secret = !!entry?.secret;
  const baseValue = entry && !secret ? entry.value : undefined;
  state.editor = { name, base, baseValue };
  const ids = { text: uid("value"), msg: uid("message") };
  const text = h("textarea", { id: ids.text, spellcheck: "false", "aria-describedby": `${ids.text}-problems` }, entry && !secret ? pretty(entry.value) : "");
  const problems = h("ul", { id: `${ids.text}-problems`, class: "problems", "aria-live": "polite", "aria-label": "Problems" });
  const changes = h("div", { "aria-live": "polite" });
  const message = h("input", { id: ids.msg, placeholder: "why" });
  const moved = h("div", {});
  const prot = protectedBy(name);
  const publish = h("button", { disabled: true }, prot ? "Open change request" : "Publish");
  const request = prot ? null : h("button", { class: "secondary", disabled: true }, "Open change request");
  let parsed;
  let checkSeq = 0;
  const check = async () => {
    const seq = ++checkSeq;
    publish.disabled = true;
    if (request) request.disabled = true;
    fill(problems, );
    try {
      parsed = JSON.parse(text.value);
    } catch (e) {
      parsed = undefined;
      problems.append(h("li", {}, `Not valid JSON: ${e.message}`));
      fill(changes, );
      return;
    }
    const d = diff(baseValue, parsed);
    fill(changes, h("h3", {}, "Changes against what is stored"), diffList(d, "Changes"));
    try {
      await api("PUT", `/v1/namespaces/${enc(state.ns)}/config/${encName(name)}?dry_run=true`, { body: text.value, raw: true });
    } catch (e) {
      if (seq !== checkSeq) return;
      if (e.failures.length) problems.append(...e.failures.map((f) => h("li", {}, `${f.pointer || "/"}: ${f.message}`)));
      else problems.append(h("li", {}, e.message));
      return;
    }
    if (seq !== checkSeq) return;
    publish.disabled = d.length === 0;
    if (request) request.disabled = d.length === 0;
  };
  const checkSoon = debounce(check, 250);
  text.addEventListener("input", () => {
    publish.disabled = true;
    checkSoon();
  });
  const openRequest = async () => {
    try {
      const { data } = await api("POST", `/v1/namespaces/${enc(state.ns)}/requests`, {
        body: { config: { [name]: parsed } },
        headers: message.value ? { "X-Cfgd-Message": message.value } : {},
      });
      state.editor = null;
      location.hash = `#/ns/${enc(state.ns)}/requests/${data.id}`;
    } catch (e) {
      showError(e);
    }
  };
  publish.addEventListener("click", async () => {
    if (prot) return openRequest();
    publish.disabled = true;
    const headers = { "If-Match": `"${state.editor.base}"` };
    if (message.value) headers["X-Cfgd-Message"] = message.value;
    try {
      const { data } = await api("PUT", `/v1/namespaces/${enc(state.ns)}/config/${encName(name)}`, { body: text.value, raw: true, headers });
      const known = state.values.get(name);
      const hidden = secret || (state.policy?.secrets || []).some((p) => matches(p, name));
      state.values.set(name, { name, value: hidden ? "<redacted>" : parsed, secret: hidden, revision: data.revision, version: (known?.version || 0) + 1 });
      state.editor = null;
      announce(`Published ${name} at revision ${data.revision}.`);
      showValue(detail, name);
    } catch (e) {
      if (e.status === 412) return conflict();
      showError(e);
      publish.disabled = false;
    }
  });
  if (request) request.addEventListener("click", openRequest);
  // Someone published meanwhile: show their change and ours against it;
  // nothing is overwritten unless asked for, again, on their revision.
  const conflict = async () => {
    let theirs;
    try {
      const res = await api("GET", `/v1/namespaces/${enc(state.ns)}/config/${encName(name)}`);
      theirs = { value: res.data, revision: Number((res.etag || "").replace(/"/g, "")) };
    } catch (e) {
      if (e.status !== 404) return showError(e);
      theirs = { value: undefined, revision: 0 };
    }
    const ours = parsed;
    fill(moved, 
      h(
        "div",
        { class: "notice", role: "alert" },
        h("h3", {}, "Someone else published meanwhile"),
        h("p", {}, `${name} is at revision ${theirs.revision} now, not ${state.editor.base}. Nothing was written.`),
        h("h3", {}, "Their change"),
        diffList(diff(baseValue, theirs.value), "Their change"),
        h("h3", {}, "Your edit against theirs"),
        diffList(diff(theirs.value, ours), "Your edit against theirs"),
        h(
          "div",
          { class: "row" },
          h("button", {
            onclick: () => {
              state.editor.base = theirs.revision;
              fill(moved, h("p", { class: "muted" }, `Your edit now applies on top of revision ${theirs.revision}; publish again to store it.`));
              publish.disabled = false;
            },
          }, "Keep my edit on top of theirs"),
          h("button", { class: "secondary", onclick: () => { state.editor = null; showValue(detail, name); } }, "Discard my edit"),
        ),
      ),
    );
  };
  state.editor.moved = (change) => {
    fill(moved, 
      h("p", { class: "notice", role: "status" }, `This value changed underneath you: revision ${change.revision} was published while you edit. Publishing will show you both changes.`),
    );
  };
  const cancel = h("button", { class: "secondary", onclick: () => { state.editor = null; showValue(detail, name); } }, "Cancel");
  fill(detail, 
    h("h2", {}, fresh ? `New value: ${name}` : `Edit ${name}`),
    moved,
    prot ? h("p", { class: "notice" }, `Protected by the policy (${prot}): publishing opens a change request.`) : null,
    secret ? h("p", { class: "notice" }, "A secret: its current value is not shown; what you publish replaces it.") : null,
    h("label", { for: ids.text }, "Value (JSON)"),
    text,
    problems,
    changes,
    h("label", { for: ids.msg }, "Message"),
    message,
    h("div", { class: "row" }, publish, request, cancel),
  );
  text.focus();
  check();
}

function editorMoved(change) {
  if (state.editor && state.editor.moved) state.editor.moved(change);
}

// ---------------------------------------------------------------- history

/** `done`: what the last action did, kept on the page (the live
 * announcements of changes replace one another). */
async function historyPage(name, done = "") {
  state.onChange = null;
  const ns = state.ns;
  const [{ data: history }, { data: audit }] = await Promise.all([
    api("GET", `/v1/namespaces/${enc(ns)}/history/${encName(name)}?limit=100`),
    api("GET", `/v1/namespaces/${enc(ns)}/audit?prefix=${enc(name)}&limit=500`),
  ]);
  const byRevision = new Map(audit.map((r) => [r.revision, r]));
  const ids = { from: uid("from"), to: uid("to") };
  const option = (e, selected) => h("option", { value: e.revision, selected }, `revision ${e.revision}`);
  const from = h("select", { id: ids.from }, history.map((e, i) => option(e, i === Math.min(1, history.length - 1))));
  const to = h("select", { id: ids.to }, history.map((e, i) => option(e, i === 0)));
  const out = h("div", { "aria-live": "polite" });
  const compare = () => {
    const a = history.find((e) => String(e.revision) === from.value);
    const b = history.find((e) => String(e.revision) === to.value);
    fill(out, diffList(diff(a?.value, b?.value), "Differences between the two revisions"));
  };
  from.addEventListener("change", compare);
  to.addEventListener("change", compare);
  const rows = history.map((e, i) => {
    const r = byRevision.get(e.revision);
    const cells = [
      h("td", {}, e.revision),
      h("td", {}, r ? r.actor : "unattributed"),
      h("td", {}, r ? when(r.time_ms) : ""),
      h("td", {}, r?.message || ""),
      h("td", {}, h("code", {}, compact(e.value))),
    ];
    const action = h("td", {});
    if (i > 0 && canWrite())
      action.append(
        h("button", {
          class: "secondary",
          onclick: async () => {
            const ok = await confirmDialog(`Roll back ${name}?`, `This writes the value of revision ${e.revision} again, as a new revision.`, `Roll back to ${e.revision}`);
            if (!ok) return;
            try {
              const { data } = await api("POST", `/v1/namespaces/${enc(ns)}/rollback/${encName(name)}`, { body: { revision: e.revision } });
              const said = `Rolled back to ${e.revision}; now at revision ${data.revision}.`;
              announce(said);
              historyPage(name, said).catch(showError);
            } catch (err) {
              showError(err);
            }
          },
        }, `Roll back to ${e.revision}`),
      );
    return h("tr", {}, ...cells, action);
  });
  render(
    h("h1", {}, `History · ${name}`),
    done ? h("p", { class: "notice", role: "status" }, done) : null,
    h("p", {}, h("a", { href: `#/ns/${enc(ns)}/config/${encName(name)}` }, `Back to ${name}`)),
    h(
      "div",
      { class: "table-wrap", tabindex: 0, role: "region", "aria-label": "Revisions" },
      h(
        "table",
        {},
        h("thead", {}, h("tr", {}, ...["Revision", "Actor", "Time", "Message", "Value", "Action"].map((t) => h("th", {}, t)))),
        h("tbody", {}, rows),
      ),
    ),
    h("h2", {}, "Compare two revisions"),
    h("div", { class: "row" }, h("label", { for: ids.from, class: "inline" }, "From"), from, h("label", { for: ids.to, class: "inline" }, "To"), to),
    out,
  );
  compare();
}

// ---------------------------------------------------------------- flags

async function flagsPage(selected) {
  state.onChange = null;
  const ns = state.ns;
  if (!state.flagLive) followFlags(ns);
  const { data: flags } = await api("GET", `/v1/namespaces/${enc(ns)}/flags`);
  const detail = h("section", { "aria-label": "Flag" });
  const table = flagTable(ns, flags, selected);
  state.flagView = { table, detail, selected, revisions: new Map(flags.map((f) => [f.name, f.revision])) };
  render(h("h1", {}, `Flags · ${ns}`), table, detail);
  const flag = flags.find((f) => f.name === selected);
  if (flag) flagDetail(detail, flag);
}

/** Follows the flags' SSE stream while the flags page is open: a change
 * made elsewhere redraws the table, marks its row, and tells an open
 * flag that it moved rather than throwing away what is being edited. */
function followFlags(ns) {
  const controller = new AbortController();
  state.flagLive = controller;
  let again = null;
  const pending = new Set();
  follow(`/v1/namespaces/${enc(ns)}/watch?section=flags`, controller, (ev) => {
    let change;
    try {
      change = JSON.parse(ev.data);
    } catch {
      return;
    }
    pending.add(change.name);
    clearTimeout(again);
    again = setTimeout(async () => {
      const view = state.flagView;
      if (state.flagLive !== controller || !view) return;
      const { data: flags } = await api("GET", `/v1/namespaces/${enc(ns)}/flags`);
      const moved = flags.filter((f) => pending.has(f.name) && f.revision > (view.revisions.get(f.name) || 0));
      const gone = [...pending].filter((n) => view.revisions.has(n) && !flags.some((f) => f.name === n));
      pending.clear();
      if (!moved.length && !gone.length) return; // our own write, shown already
      const table = flagTable(ns, flags, view.selected);
      view.table.replaceWith(table);
      view.table = table;
      view.revisions = new Map(flags.map((f) => [f.name, f.revision]));
      for (const f of moved) {
        table.querySelector(`tr[data-flag="${CSS.escape(f.name)}"]`)?.classList.add("changed-now");
        announce(`Flag ${f.name} changed (revision ${f.revision}).`);
      }
      const mine = moved.find((f) => f.name === view.selected);
      if (mine)
        view.detail.prepend(
          h(
            "div",
            { class: "notice", role: "status" },
            `${mine.name} changed underneath you (revision ${mine.revision}). `,
            h("button", { class: "secondary", onclick: () => flagDetail(view.detail, mine) }, "Show the new definition"),
          ),
        );
    }, 100);
  });
}

function flagTable(ns, flags, selected) {
  if (!flags.length) return h("p", {}, "No flags in this namespace.");
  const rows = flags.map((f) => {
    const def = f.value;
    const toggle = h("input", {
      type: "checkbox",
      role: "switch",
      "aria-label": `Enabled: ${f.name}`,
      checked: def.state === "ENABLED",
    });
    toggle.addEventListener("change", async () => {
      const next = { ...def, state: toggle.checked ? "ENABLED" : "DISABLED" };
      try {
        await api("PUT", `/v1/namespaces/${enc(ns)}/flags/${enc(f.name)}`, { body: next, headers: { "If-Match": `"${f.revision}"` } });
        announce(`${f.name} ${toggle.checked ? "enabled" : "disabled"}.`);
        await flagsPage(selected);
      } catch (e) {
        toggle.checked = !toggle.checked;
        showError(e);
      }
    });
    return h(
      "tr",
      { "data-flag": f.name },
      h("td", {}, h("a", { href: `#/ns/${enc(ns)}/flags/${enc(f.name)}`, "aria-current": f.name === selected ? "true" : null }, f.name)),
      h("td", {}, canWrite() ? h("label", { class: "inline" }, toggle, def.state) : def.state),
      h("td", {}, def.defaultVariant),
      h("td", {}, Object.entries(def.variants || {}).map(([k, v]) => `${k}=${compact(v)}`).join(", ")),
    );
  });
  return h(
    "div",
    { class: "table-wrap", tabindex: 0, role: "region", "aria-label": "Flags" },
    h("table", {}, h("thead", {}, h("tr", {}, ...["Flag", "State", "Default", "Variants"].map((t) => h("th", {}, t)))), h("tbody", {}, rows)),
  );
}

function flagDetail(detail, flag) {
  const ns = state.ns;
  const def = flag.value;
  const variants = Object.keys(def.variants || {});
  const put = async (next, what) => {
    try {
      await api("PUT", `/v1/namespaces/${enc(ns)}/flags/${enc(flag.name)}`, { body: next, headers: { "If-Match": `"${flag.revision}"` } });
      announce(`${flag.name}: ${what} saved.`);
      await flagsPage(flag.name);
    } catch (e) {
      showError(e);
    }
  };
  const parts = [h("h2", {}, flag.name), h("pre", { tabindex: 0, "aria-label": `Definition of ${flag.name}` }, pretty(def))];

  // Rollout: one slider per variant, always summing to 100.
  const current = new Map(variants.map((v) => [v, 0]));
  const fractional = def.targeting && Array.isArray(def.targeting.fractional) ? def.targeting.fractional : null;
  if (fractional) {
    const buckets = fractional.filter((b) => Array.isArray(b) && typeof b[0] === "string");
    const total = buckets.reduce((s, b) => s + (Number(b[1]) || 0), 0) || 1;
    for (const [v, w] of buckets) if (current.has(v)) current.set(v, Math.round(((Number(w) || 0) * 100) / total));
  } else if (variants.length) {
    current.set(def.defaultVariant && current.has(def.defaultVariant) ? def.defaultVariant : variants[0], 100);
  }
  fixSum(current, null);
  const sliders = new Map();
  const outputs = new Map();
  const sync = () => {
    for (const [v, w] of current) {
      sliders.get(v).value = w;
      outputs.get(v).textContent = `${w}%`;
    }
  };
  const rollout = h("div", { class: "panel", role: "group", "aria-label": "Rollout" }, h("h3", {}, "Rollout"));
  for (const v of variants) {
    const id = uid("w");
    const slider = h("input", { id, type: "range", min: 0, max: 100, step: 1, value: current.get(v), disabled: !canWrite() });
    const output = h("output", { for: id }, `${current.get(v)}%`);
    slider.addEventListener("input", () => {
      current.set(v, Number(slider.value));
      fixSum(current, v);
      sync();
    });
    sliders.set(v, slider);
    outputs.set(v, output);
    rollout.append(h("div", { class: "slider" }, h("label", { for: id }, `${v} %`), slider, output));
  }
  if (canWrite() && variants.length)
    rollout.append(
      h("div", { class: "row" }, h("button", {
        onclick: () => put({ ...def, targeting: { fractional: [...current].map(([v, w]) => [v, w]) } }, "rollout"),
      }, "Save rollout")),
    );
  parts.push(rollout);

  // Targeting, checked by the server as one types.
  if (canWrite()) {
    const id = uid("targeting");
    const text = h("textarea", { id, spellcheck: "false" }, pretty(def.targeting || {}));
    const problems = h("ul", { class: "problems", "aria-live": "polite", "aria-label": "Targeting problems" });
    const save = h("button", {}, "Save targeting");
    let next = null;
    const check = debounce(async () => {
      fill(problems, );
      save.disabled = true;
      let targeting;
      try {
        targeting = JSON.parse(text.value);
      } catch (e) {
        problems.append(h("li", {}, `Not valid JSON: ${e.message}`));
        return;
      }
      next = { ...def, targeting };
      if (!targeting || (typeof targeting === "object" && !Array.isArray(targeting) && !Object.keys(targeting).length)) delete next.targeting;
      try {
        await api("PUT", `/v1/namespaces/${enc(ns)}/flags/${enc(flag.name)}?dry_run=true`, { body: next });
        save.disabled = false;
      } catch (e) {
        problems.append(h("li", {}, e.message));
      }
    }, 250);
    text.addEventListener("input", check);
    save.addEventListener("click", () => next && put(next, "targeting"));
    save.disabled = true;
    parts.push(h("div", { class: "panel" }, h("h3", {}, "Targeting"), h("label", { for: id }, "Targeting (JSON Logic)"), text, problems, h("div", { class: "row" }, save)));
  }

  // Evaluate as a service would, through OFREP.
  const ctxId = uid("context");
  const context = h("textarea", { id: ctxId, spellcheck: "false", rows: 4 }, pretty({ targetingKey: "user-1" }));
  const result = h("dl", { class: "meta", "aria-live": "polite", "aria-label": "Evaluation result" });
  const evaluate = async () => {
    fill(result, );
    let ctx;
    try {
      ctx = JSON.parse(context.value);
    } catch (e) {
      return showError(new Error(`The context is not valid JSON: ${e.message}`));
    }
    try {
      const { data } = await api("POST", `/ofrep/v1/evaluate/flags/${enc(flag.name)}`, { body: { context: ctx }, headers: { "X-Cfgd-Namespace": ns } });
      result.append(h("dt", {}, "Value"), h("dd", {}, compact(data.value)), h("dt", {}, "Variant"), h("dd", {}, data.variant ?? ""), h("dt", {}, "Reason"), h("dd", {}, data.reason ?? ""));
    } catch (e) {
      result.append(h("dt", {}, "Error"), h("dd", {}, e.message));
    }
  };
  parts.push(h("div", { class: "panel" }, h("h3", {}, "Evaluate"), h("label", { for: ctxId }, "Evaluation context (JSON)"), context, h("div", { class: "row" }, h("button", { onclick: evaluate }, "Evaluate")), result));
  fill(detail, ...parts);
}

/** Makes the weights sum to 100, moving the ones other than `fixed` in
 * proportion to what they hold. */
function fixSum(weights, fixed) {
  const others = [...weights.keys()].filter((k) => k !== fixed);
  if (!others.length) {
    if (fixed !== null) weights.set(fixed, 100);
    return;
  }
  const want = 100 - (fixed === null ? 0 : weights.get(fixed));
  const have = others.reduce((s, k) => s + weights.get(k), 0);
  let given = 0;
  others.forEach((k, i) => {
    let w;
    if (i === others.length - 1) w = want - given;
    else w = have ? Math.floor((weights.get(k) * want) / have) : Math.floor(want / others.length);
    weights.set(k, w);
    given += w;
  });
}

// ---------------------------------------------------------------- audit

/** How a record's name reads: flags as flags/NAME, schemas by pattern. */
function nameLabel(n) {
  if (n.kind === "flags") return `flags/${n.name}`;
  if (n.kind === "schemas") return `schema ${n.name}`;
  if (n.kind === "policy") return "the policy";
  return n.name;
}

async function auditPage() {
  state.onChange = null;
  const ns = state.ns;
  const ids = { prefix: uid("prefix"), actor: uid("actor"), since: uid("since") };
  const prefix = h("input", { id: ids.prefix, type: "search" });
  const actor = h("input", { id: ids.actor, type: "search" });
  const since = h("input", { id: ids.since, type: "datetime-local" });
  const out = h("div", { class: "table-wrap", tabindex: 0, role: "region", "aria-label": "Audit records", "aria-live": "polite" });
  const load = async (ev) => {
    if (ev) ev.preventDefault();
    const q = new URLSearchParams({ limit: "200" });
    if (prefix.value) q.set("prefix", prefix.value);
    if (actor.value) q.set("actor", actor.value);
    try {
      const { data } = await api("GET", `/v1/namespaces/${enc(ns)}/audit?${q}`);
      const after = since.value ? new Date(since.value).getTime() : 0;
      const records = data.filter((r) => !after || r.time_ms >= after || !r.time_ms);
      fill(out, 
        records.length
          ? h(
              "table",
              {},
              h("thead", {}, h("tr", {}, ...["Revision", "Time", "Actor", "Via", "Action", "Names", "Message"].map((t) => h("th", {}, t)))),
              h(
                "tbody",
                {},
                records.map((r) =>
                  h(
                    "tr",
                    {},
                    h("td", {}, r.revision),
                    h("td", {}, when(r.time_ms)),
                    h("td", {}, r.actor),
                    h("td", {}, r.via),
                    h("td", {}, r.action + (r.forced ? " (forced)" : "") + (r.request ? ` #${r.request}` : "")),
                    h("td", {}, r.names.map(nameLabel).join(", ")),
                    h("td", {}, r.message || ""),
                  ),
                ),
              ),
            )
          : h("p", {}, "No record matches."),
      );
    } catch (e) {
      showError(e);
    }
  };
  render(
    h("h1", {}, `Audit log · ${ns}`),
    h(
      "form",
      { class: "row", onsubmit: load, "aria-label": "Filter" },
      h("label", { for: ids.prefix, class: "inline" }, "Name prefix"),
      prefix,
      h("label", { for: ids.actor, class: "inline" }, "Actor"),
      actor,
      h("label", { for: ids.since, class: "inline" }, "Since"),
      since,
      h("button", { type: "submit" }, "Filter"),
    ),
    out,
  );
  await load();
}

// ---------------------------------------------------------------- releases

async function releasesPage(id) {
  state.onChange = null;
  const ns = state.ns;
  const { data: list } = await api("GET", `/v1/namespaces/${enc(ns)}/releases?limit=50`);
  const detail = h("section", { "aria-label": "Release" });
  render(
    h("h1", {}, `Releases · ${ns}`),
    list.length
      ? h(
          "div",
          { class: "table-wrap", tabindex: 0, role: "region", "aria-label": "Releases" },
          h(
            "table",
            {},
            h("thead", {}, h("tr", {}, ...["Release", "Revision", "Action", "Actor", "Names", "Message"].map((t) => h("th", {}, t)))),
            h(
              "tbody",
              {},
              list.map((r) =>
                h(
                  "tr",
                  {},
                  h("td", {}, h("a", { href: `#/ns/${enc(ns)}/releases/${enc(r.id)}` }, r.id)),
                  h("td", {}, r.revision),
                  h("td", {}, r.action),
                  h("td", {}, r.actor),
                  h("td", {}, r.names.length),
                  h("td", {}, r.message || ""),
                ),
              ),
            ),
          ),
        )
      : h("p", {}, "No releases yet."),
    detail,
  );
  if (!id) return;
  const { data: r } = await api("GET", `/v1/namespaces/${enc(ns)}/releases/${enc(id)}`);
  const actions = h("div", { class: "row" });
  if (canWrite())
    actions.append(
      h("button", {
        class: "danger",
        onclick: async () => {
          if (!(await confirmDialog("Revert this release?", "Every name it changed gets its value from before it, as one new release.", "Revert"))) return;
          try {
            const { data } = await api("POST", `/v1/namespaces/${enc(ns)}/releases/${enc(id)}/revert`);
            location.hash = `#/ns/${enc(ns)}/releases/${enc(data.id)}`;
          } catch (e) {
            showError(e);
          }
        },
      }, "Revert release"),
    );
  fill(detail, 
    h("h2", {}, `Release ${r.id}`),
    h("p", {}, `Revision ${r.revision}, by ${r.actor} via ${r.via}, ${when(r.time_ms)}${r.message ? ` — ${r.message}` : ""}`),
    namedDiff(r.changes, "Release changes"),
    actions,
  );
}

// ---------------------------------------------------------------- requests

async function requestsPage(id) {
  state.onChange = null;
  const ns = state.ns;
  const stateId = uid("state");
  const filter = h("select", { id: stateId }, ["open", "merged", "closed", "all"].map((s) => h("option", { value: s }, s)));
  filter.value = sessionStorage.getItem("cfgd-request-state") || "open";
  const listBox = h("div", { class: "table-wrap", tabindex: 0, role: "region", "aria-label": "Change requests", "aria-live": "polite" });
  const loadList = async () => {
    sessionStorage.setItem("cfgd-request-state", filter.value);
    const { data } = await api("GET", `/v1/namespaces/${enc(ns)}/requests?state=${filter.value}`);
    fill(listBox, 
      data.length
        ? h(
            "table",
            {},
            h("thead", {}, h("tr", {}, ...["Request", "State", "Author", "Approved by", "Names", "Message"].map((t) => h("th", {}, t)))),
            h(
              "tbody",
              {},
              data.map((r) =>
                h(
                  "tr",
                  {},
                  h("td", {}, h("a", { href: `#/ns/${enc(ns)}/requests/${enc(r.id)}` }, `#${r.id}`)),
                  h("td", {}, r.state),
                  h("td", {}, r.author),
                  h("td", {}, r.approvals.map((a) => a.actor).join(", ")),
                  h("td", {}, Object.keys(r.base).join(", ")),
                  h("td", {}, r.message || ""),
                ),
              ),
            ),
          )
        : h("p", {}, `No ${filter.value === "all" ? "" : filter.value + " "}change requests.`),
    );
  };
  filter.addEventListener("change", () => loadList().catch(showError));
  const detail = h("section", { "aria-label": "Change request" });
  render(
    h("h1", {}, `Change requests · ${ns}`),
    h("p", { class: "muted" }, "Open one from the editor of a value: its Open change request button."),
    h("div", { class: "row" }, h("label", { for: stateId, class: "inline" }, "Show"), filter),
    listBox,
    detail,
  );
  await loadList();
  if (!id) return;
  const { data: r } = await api("GET", `/v1/namespaces/${enc(ns)}/requests/${enc(id)}`);
  const me = state.who && state.who.name;
  const step = (what, label, cls) =>
    h("button", {
      class: cls,
      onclick: async () => {
        try {
          await api("POST", `/v1/namespaces/${enc(ns)}/requests/${enc(id)}/${what}`);
          announce(`Request #${id}: ${what} done.`);
          await requestsPage(id);
        } catch (e) {
          showError(e);
        }
      },
    }, label);
  const actions = h("div", { class: "row" });
  if (canWrite() && r.state === "open") {
    if (r.author !== me && !r.approvals.some((a) => a.actor === me)) actions.append(step("approve", "Approve"));
    actions.append(step("merge", "Merge"), step("rebase", "Rebase", "secondary"), step("close", "Close", "secondary"));
  }
  fill(detail, 
    h("h2", {}, `Change request #${r.id} (${r.state})`),
    h("p", {}, `Opened by ${r.author} via ${r.via}, ${when(r.created_ms)}${r.message ? ` — ${r.message}` : ""}`),
    h("p", {}, r.approvals.length ? `Approved by ${r.approvals.map((a) => a.actor).join(", ")}` : "Not approved yet."),
    r.release ? h("p", {}, "Merged as ", h("a", { href: `#/ns/${enc(ns)}/releases/${enc(r.release)}` }, `release ${r.release}`)) : null,
    r.moved && r.moved.length ? h("p", { class: "notice" }, `Changed since it was opened: ${r.moved.join(", ")}. Rebase it, then have it approved again.`) : null,
    r.state === "open" ? h("h3", {}, "What merging changes") : null,
    r.state === "open" ? namedDiff(r.changes, "Request changes") : null,
    actions,
  );
}

// ---------------------------------------------------------------- schemas

async function schemasPage() {
  state.onChange = null;
  const ns = state.ns;
  const { data: schemas } = await api("GET", `/v1/namespaces/${enc(ns)}/schemas`);
  const editor = h("section", { "aria-label": "Schema editor" });
  const edit = (pattern, schema) => {
    const ids = { pattern: uid("pattern"), schema: uid("schema") };
    const p = h("input", { id: ids.pattern, value: pattern || "", readonly: pattern ? true : null });
    const text = h("textarea", { id: ids.schema, spellcheck: "false" }, pretty(schema || { type: "object" }));
    const problems = h("ul", { class: "problems", "aria-live": "polite", "aria-label": "Schema problems" });
    const save = h("button", { disabled: true }, "Save schema");
    let body;
    let seq = 0;
    // Checked by the server as one types: a valid schema, which no stored
    // value it would govern fails.
    const check = debounce(async () => {
      const mine = ++seq;
      save.disabled = true;
      fill(problems);
      try {
        body = JSON.parse(text.value);
      } catch (e) {
        problems.append(h("li", {}, `Not valid JSON: ${e.message}`));
        return;
      }
      if (!p.value.trim()) return problems.append(h("li", {}, "Give a pattern."));
      try {
        await api("PUT", `/v1/namespaces/${enc(ns)}/schemas/${encName(p.value.trim())}?dry_run=true`, { body });
        if (mine === seq) save.disabled = false;
      } catch (e) {
        if (mine === seq) problems.append(h("li", {}, e.message));
      }
    }, 250);
    text.addEventListener("input", check);
    p.addEventListener("input", check);
    save.addEventListener("click", async () => {
      try {
        await api("PUT", `/v1/namespaces/${enc(ns)}/schemas/${encName(p.value.trim())}`, { body });
        announce(`Schema ${p.value} saved.`);
        await schemasPage();
      } catch (e) {
        showError(e);
      }
    });
    fill(
      editor,
      h("h2", {}, pattern ? `Edit schema ${pattern}` : "New schema"),
      h("label", { for: ids.pattern }, "Pattern (a name, or a prefix ending in *)"),
      p,
      h("label", { for: ids.schema }, "JSON Schema"),
      text,
      problems,
      h("div", { class: "row" }, save),
    );
    (pattern ? text : p).focus();
    check();
  };
  const head = h("div", { class: "row" }, h("h1", {}, `Schemas · ${ns}`));
  if (canAdmin()) head.append(h("button", { class: "secondary", onclick: () => edit(null, null) }, "New schema"));
  render(
    head,
    schemas.length
      ? h(
          "div",
          {},
          schemas.map((s) =>
            h(
              "div",
              { class: "panel" },
              h("h2", {}, s.name),
              h("pre", { tabindex: 0, "aria-label": `Schema ${s.name}` }, pretty(s.value)),
              canAdmin() ? h("button", { class: "secondary", onclick: () => edit(s.name, s.value) }, `Edit ${s.name}`) : null,
            ),
          ),
        )
      : h("p", {}, "No schemas: any JSON value may be stored."),
    editor,
  );
}

window.addEventListener("hashchange", route);
start();
