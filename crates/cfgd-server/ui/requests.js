// Change requests: the list by state, one request with what merging it
// changes (the server's diff), and its steps: approve, merge, rebase,
// close.

import { api } from "./api.js";
import { namedDiff } from "./diff.js";
import { announce, enc, fill, h, render, showError, uid, when } from "./dom.js";
import { canWrite, state } from "./state.js";

export async function requestsPage(id) {
  state.onChange = null;
  const ns = state.ns;
  const stateId = uid("state");
  const filter = h("select", { id: stateId }, ["open", "merged", "closed", "all"].map((s) => h("option", { value: s }, s)));
  filter.value = sessionStorage.getItem("cfgd-request-state") || "open";
  const listBox = h("div", { class: "table-wrap", tabindex: 0, role: "region", "aria-label": "Change requests", "aria-live": "polite" });
  const loadList = async () => {
    sessionStorage.setItem("cfgd-request-state", filter.value);
    const { data } = await api("GET", `/v1/namespaces/${enc(ns)}/requests?state=${filter.value}`);
    fill(
      listBox,
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
  fill(
    detail,
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
