// The config page: the namespace's names, live, with search; one value
// with its revision, last change and what the policy says of it.

import { api, policyOf } from "./api.js";
import { compact, confirmDialog, enc, encName, fill, h, pretty, render, showError, table, when } from "./dom.js";
import { editValue } from "./editor.js";
import { canReadSecrets, canWrite, state } from "./state.js";

/** The newest audit record of a change to value `name`. */
async function lastChange(name) {
  const { data } = await api("GET", `/v1/namespaces/${enc(state.ns)}/audit?prefix=${enc(name)}&limit=20`);
  return data.find((r) => r.names.some((n) => n.name === name && n.kind === "config"));
}

export async function configPage(selected) {
  const ns = state.ns;
  const search = h("input", { id: "search", type: "search", placeholder: "name or prefix" });
  const list = h("ul", { class: "names", "aria-label": "Names" });
  const detail = h("section", { class: "detail", "aria-label": "Value" });
  const drawList = () => {
    const q = search.value.trim().toLowerCase();
    const names = [...state.values.keys()].sort().filter((n) => n.toLowerCase().includes(q));
    fill(
      list,
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
  if (canWrite()) head.append(h("button", { class: "secondary", onclick: () => newValue(detail) }, "New value"));
  render(head, h("div", { class: "split" }, h("div", {}, h("label", { for: "search" }, "Search names"), search, list), detail));
  state.onChange = (change) => {
    drawList();
    const row = list.querySelector(`li[data-name="${CSS.escape(change.name)}"]`);
    if (row) row.classList.add("changed-now");
    setTimeout(() => row && row.classList.remove("changed-now"), 3000);
    if (change.name === selected) {
      if (state.editor && state.editor.name === selected) state.editor.moved?.(change);
      else showValue(detail, selected);
    }
  };
  if (selected) await showValue(detail, selected);
  else detail.append(h("p", { class: "muted" }, "Pick a name to see its value."));
}

/** Shows value `name` in `detail`. */
export async function showValue(detail, name) {
  const entry = state.values.get(name);
  if (!entry) {
    fill(detail, h("h2", {}, name), h("p", {}, "This name holds no value."));
    return;
  }
  const ns = state.ns;
  // Asked at once: the editor opened from here waits for the same answer.
  const facts = policyOf(ns, name);
  facts.catch(() => {});
  const meta = h("dl", { class: "meta" }, h("dt", {}, "Revision"), h("dd", {}, entry.revision), h("dt", {}, "Version"), h("dd", {}, entry.version));
  const actions = h("div", { class: "row" });
  const done = () => showValue(detail, name);
  if (canWrite()) actions.append(h("button", { onclick: () => editValue(detail, name, { facts, done }) }, "Edit"));
  actions.append(h("a", { class: "button secondary", href: `#/ns/${enc(ns)}/history/${encName(name)}` }, "History"));
  // A secret's value is shown only when asked, to a token that may see it.
  const value = h("pre", { tabindex: 0, "aria-label": `Value of ${name}` }, entry.secret ? "Secret: hidden" : pretty(entry.value));
  if (entry.secret && canReadSecrets())
    actions.prepend(
      h(
        "button",
        {
          class: "secondary",
          onclick: async (ev) => {
            try {
              const { data } = await api("GET", `/v1/namespaces/${enc(ns)}/config/${encName(name)}`);
              value.textContent = pretty(data);
              ev.target.remove();
            } catch (e) {
              showError(e);
            }
          },
        },
        "Reveal secret",
      ),
    );
  const notice = h("div", {});
  const layered = h("div", {});
  fill(
    detail,
    h("h2", {}, name),
    meta,
    notice,
    entry.secret ? h("p", { class: "notice" }, "A secret: stored encrypted; its value is shown only when asked for.") : null,
    value,
    actions,
    layered,
  );
  const current = () => state.values.get(name) === entry && detail.contains(value);
  if (!entry.secret) showLayers(layered, name, { detail, facts, done, current }).catch(showError);
  const [policy, record] = await Promise.allSettled([facts, lastChange(name)]);
  if (policy.status === "rejected") showError(policy.reason);
  else if (policy.value.protected && current())
    fill(notice, h("p", { class: "notice" }, `Protected by the policy (${policy.value.protected}): changes go through a change request.`));
  if (record.status === "rejected") showError(record.reason);
  else if (record.value && current()) {
    const r = record.value;
    meta.append(h("dt", {}, "Last change"), h("dd", {}, `${r.actor} via ${r.via}, ${when(r.time_ms)}${r.message ? ` — ${r.message}` : ""}`));
  }
}

/** In a namespace that extends others: each layer's value, where each
 * field of the effective value came from, and the two ways to change that
 * here: override (edit this namespace's own layer) and reset to inherited
 * (delete it). */
async function showLayers(into, name, { detail, facts, done, current }) {
  const ns = state.ns;
  const path = `/v1/namespaces/${enc(ns)}/config/${encName(name)}`;
  const { data } = await api("GET", `${path}?explain=true`);
  if (data.layers.length < 2 || !current()) return;
  const own = data.layers[data.layers.length - 1];
  const inherited = data.layers.slice(0, -1).some((l) => l.value !== null);
  const layerRows = data.layers.map((l) =>
    h("tr", {}, h("td", {}, l.namespace), h("td", {}, l.revision || "—"), h("td", {}, h("code", {}, l.value === null ? "—" : compact(l.value)))),
  );
  const originRows = Object.entries(data.origins).map(([field, from]) =>
    h("tr", { "data-field": field }, h("td", {}, h("code", {}, field || "/")), h("td", {}, from)),
  );
  const buttons = h("div", { class: "row" });
  if (canWrite()) {
    buttons.append(
      h("button", { class: "secondary", onclick: () => editValue(detail, name, { facts, done, initial: own.value ?? {} }) }, "Override here"),
    );
    if (own.value !== null && inherited)
      buttons.append(
        h(
          "button",
          {
            class: "danger",
            onclick: async () => {
              const ok = await confirmDialog("Reset to inherited?", `Deletes ${ns}'s own value of ${name}: the value its layers below give shows through.`, "Reset");
              if (!ok) return;
              try {
                await api("DELETE", path);
                done();
              } catch (e) {
                showError(e);
              }
            },
          },
          "Reset to inherited",
        ),
      );
  }
  fill(
    into,
    h("h3", {}, "Origins"),
    table(`Origins of ${name}`, ["Field", "From"], originRows),
    h("h3", {}, "Layers"),
    table(`Layers of ${name}`, ["Layer", "Revision", "Own value"], layerRows),
    buttons,
  );
}

function newValue(detail) {
  const input = h("input", { id: "new-name", required: true });
  const go = () => {
    const name = input.value.trim();
    if (name) editValue(detail, name, { fresh: true, done: () => showValue(detail, name) });
  };
  fill(detail, h("h2", {}, "New value"), h("label", { for: "new-name" }, "Name"), input, h("div", { class: "row" }, h("button", { onclick: go }, "Continue")));
  input.focus();
}
