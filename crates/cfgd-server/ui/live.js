// The event stream: the namespace's values followed over SSE (fetch, since
// EventSource cannot send the token), resumed with Last-Event-ID after a
// loss, with a banner while it is lost.

import { api, authHeaders } from "./api.js";
import { $, announce, enc, fill, showError } from "./dom.js";
import { state } from "./state.js";

export function stopLive() {
  if (state.live) state.live.controller.abort();
  state.live = null;
  stopFlagLive();
}

export function stopFlagLive() {
  if (state.flagLive) state.flagLive.abort();
  state.flagLive = null;
}

/** Switches to namespace `ns`: its values, and their live stream. */
export async function enter(ns) {
  if (state.ns === ns && state.live) return;
  stopLive();
  state.ns = ns;
  state.values = new Map();
  state.editor = null;
  await startLive(ns);
  const { data: list } = await api("GET", `/v1/namespaces/${enc(ns)}/config`);
  for (const e of list) {
    const known = state.values.get(e.name);
    if (!known || known.revision < e.revision) state.values.set(e.name, e);
  }
}

/** Follows the namespace's values over SSE. */
function startLive(ns) {
  const controller = new AbortController();
  state.live = { ns, controller };
  return follow(`/v1/namespaces/${enc(ns)}/watch`, controller, onEvent);
}

/** Follows an SSE stream, handing each event to `handle`, until
 * `controller` aborts. Resolves once the first connection is open (or
 * failed). */
export function follow(path, controller, handle) {
  let opened;
  const first = new Promise((r) => (opened = r));
  const cursor = { lastId: null };
  (async () => {
    let lost = false;
    while (!controller.signal.aborted) {
      try {
        const headers = authHeaders();
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

/** Reads `body` as an event stream until it ends, keeping the last event
 * id in `cursor`. */
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
