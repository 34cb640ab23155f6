// The audit log: who changed what, when, and why, filtered by name
// prefix, actor and time.

import { api } from "./api.js";
import { enc, fill, h, render, showError, uid, when } from "./dom.js";
import { state } from "./state.js";

/** How a record's name reads: flags as flags/NAME, schemas by pattern. */
function nameLabel(n) {
  if (n.kind === "flags") return `flags/${n.name}`;
  if (n.kind === "schemas") return `schema ${n.name}`;
  if (n.kind === "policy") return "the policy";
  return n.name;
}

export async function auditPage() {
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
      fill(
        out,
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
