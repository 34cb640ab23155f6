// The flags page: the namespace's flags with a switch each, followed live
// while the page is open; one flag's detail in flag.js.

import { api } from "./api.js";
import { announce, compact, enc, h, render, showError, table } from "./dom.js";
import { flagDetail } from "./flag.js";
import { follow } from "./live.js";
import { canWrite, state } from "./state.js";

export async function flagsPage(selected) {
  state.onChange = null;
  const ns = state.ns;
  if (!state.flagLive) followFlags(ns);
  const { data: flags } = await api("GET", `/v1/namespaces/${enc(ns)}/flags`);
  const detail = h("section", { "aria-label": "Flag" });
  const view = flagTable(ns, flags, selected);
  state.flagView = { table: view, detail, selected, revisions: new Map(flags.map((f) => [f.name, f.revision])) };
  render(h("h1", {}, `Flags · ${ns}`), view, detail);
  const flag = flags.find((f) => f.name === selected);
  if (flag) flagDetail(detail, flag, () => flagsPage(flag.name));
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
      const fresh = flagTable(ns, flags, view.selected);
      view.table.replaceWith(fresh);
      view.table = fresh;
      view.revisions = new Map(flags.map((f) => [f.name, f.revision]));
      for (const f of moved) {
        fresh.querySelector(`tr[data-flag="${CSS.escape(f.name)}"]`)?.classList.add("changed-now");
        announce(`Flag ${f.name} changed (revision ${f.revision}).`);
      }
      const mine = moved.find((f) => f.name === view.selected);
      if (mine)
        view.detail.prepend(
          h(
            "div",
            { class: "notice", role: "status" },
            `${mine.name} changed underneath you (revision ${mine.revision}). `,
            h("button", { class: "secondary", onclick: () => flagDetail(view.detail, mine, () => flagsPage(mine.name)) }, "Show the new definition"),
          ),
        );
    }, 100);
  });
}

function flagTable(ns, flags, selected) {
  if (!flags.length) return h("p", {}, "No flags in this namespace.");
  const rows = flags.map((f) => {
    const def = f.value;
    const toggle = h("input", { type: "checkbox", role: "switch", "aria-label": `Enabled: ${f.name}`, checked: def.state === "ENABLED" });
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
  return table("Flags", ["Flag", "State", "Default", "Variants"], rows);
}
