// Releases: the list, one release with its changes as the server diffs
// them, and its revert.

import { api } from "./api.js";
import { namedDiff } from "./diff.js";
import { confirmDialog, enc, fill, h, render, showError, when } from "./dom.js";
import { canWrite, state } from "./state.js";

export async function releasesPage(id) {
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
  fill(
    detail,
    h("h2", {}, `Release ${r.id}`),
    h("p", {}, `Revision ${r.revision}, by ${r.actor} via ${r.via}, ${when(r.time_ms)}${r.message ? ` — ${r.message}` : ""}`),
    namedDiff(r.changes, "Release changes"),
    actions,
  );
}
