// The history of one value: its revisions with who made them, rollback,
// and two revisions compared as the server diffs them.

import { api, diffRevisions } from "./api.js";
import { diffList } from "./diff.js";
import { announce, compact, confirmDialog, enc, encName, fill, h, render, showError, table, uid, when } from "./dom.js";
import { canWrite, state } from "./state.js";

/** `done`: what the last action did, kept on the page (the live
 * announcements of changes replace one another). */
export async function historyPage(name, done = "") {
  state.onChange = null;
  const ns = state.ns;
  const [{ data: history }, { data: audit }] = await Promise.all([
    api("GET", `/v1/namespaces/${enc(ns)}/history/${encName(name)}?limit=100`),
    api("GET", `/v1/namespaces/${enc(ns)}/audit?prefix=${enc(name)}&limit=500`),
  ]);
  const byRevision = new Map(audit.map((r) => [r.revision, r]));
  const ids = { from: uid("from"), to: uid("to"), compare: uid("compare") };
  const option = (e, selected) => h("option", { value: e.revision, selected }, `revision ${e.revision}`);
  const from = h("select", { id: ids.from }, history.map((e, i) => option(e, i === Math.min(1, history.length - 1))));
  const to = h("select", { id: ids.to }, history.map((e, i) => option(e, i === 0)));
  const out = h("div", { "aria-live": "polite" });
  let seq = 0;
  const compare = async () => {
    const mine = ++seq;
    try {
      const { changes } = await diffRevisions(ns, name, from.value, to.value);
      if (mine === seq) fill(out, diffList(changes, "Differences between the two revisions"));
    } catch (e) {
      if (mine === seq) fill(out);
      showError(e);
    }
  };
  from.addEventListener("change", compare);
  to.addEventListener("change", compare);
  const rows = history.map((e, i) => {
    const r = byRevision.get(e.revision);
    const action = h("td", {});
    if (i > 0 && canWrite()) action.append(rollbackButton(ns, name, e.revision));
    return h(
      "tr",
      {},
      h("td", {}, e.revision),
      h("td", {}, r ? r.actor : "unattributed"),
      h("td", {}, r ? when(r.time_ms) : ""),
      h("td", {}, r?.message || ""),
      h("td", {}, h("code", {}, compact(e.value))),
      action,
    );
  });
  render(
    h("h1", {}, `History · ${name}`),
    done ? h("p", { class: "notice", role: "status" }, done) : null,
    h("p", {}, h("a", { href: `#/ns/${enc(ns)}/config/${encName(name)}` }, `Back to ${name}`)),
    table("Revisions", ["Revision", "Actor", "Time", "Message", "Value", "Action"], rows),
    h(
      "section",
      { "aria-labelledby": ids.compare },
      h("h2", { id: ids.compare }, "Compare two revisions"),
      h("div", { class: "row" }, h("label", { for: ids.from, class: "inline" }, "From"), from, h("label", { for: ids.to, class: "inline" }, "To"), to),
      out,
    ),
  );
  await compare();
}

function rollbackButton(ns, name, revision) {
  return h(
    "button",
    {
      class: "secondary",
      onclick: async () => {
        const ok = await confirmDialog(`Roll back ${name}?`, `This writes the value of revision ${revision} again, as a new revision.`, `Roll back to ${revision}`);
        if (!ok) return;
        try {
          const { data } = await api("POST", `/v1/namespaces/${enc(ns)}/rollback/${encName(name)}`, { body: { revision } });
          const said = `Rolled back to ${revision}; now at revision ${data.revision}.`;
          announce(said);
          historyPage(name, said).catch(showError);
        } catch (err) {
          showError(err);
        }
      },
    },
    `Roll back to ${revision}`,
  );
}
