// Overlays: gray releases by label. Who sees each, its values, and its
// end: promote (one release into the namespace's own layer) or abandon.

import { api } from "./api.js";
import { compact, confirmDialog, enc, h, render, showError, table } from "./dom.js";
import { canWrite, state } from "./state.js";

export async function overlaysPage() {
  state.onChange = null;
  const ns = state.ns;
  const { data: overlays } = await api("GET", `/v1/namespaces/${enc(ns)}/overlays`);
  const act = (overlay, verb, method, path, text) => async () => {
    if (!(await confirmDialog(`${verb} overlay ${overlay}?`, text, verb))) return;
    try {
      await api(method, path);
      await overlaysPage();
    } catch (e) {
      showError(e);
    }
  };
  const rows = overlays.map((o) => {
    const base = `/v1/namespaces/${enc(ns)}/overlays/${enc(o.name)}`;
    const who = [
      ...Object.entries(o.settings.selector || {}).map(([k, v]) => `${k}=${v}`),
      ...(o.settings.percent != null ? [`${o.settings.percent}% of instances`] : []),
    ].join(", ");
    const values = Object.entries(o.values).map(([n, v]) => h("div", {}, h("code", {}, `${n}: ${compact(v)}`)));
    const buttons = h("td", {});
    if (canWrite())
      buttons.append(
        h("button", { onclick: act(o.name, "Promote", "POST", `${base}/promote`, "Its values are written to this namespace's own layer, as one release, and the overlay is removed: every client then sees them.") }, `Promote ${o.name}`),
        h("button", { class: "danger", onclick: act(o.name, "Abandon", "DELETE", base, "The overlay and its values are removed; no client sees them any more.") }, `Abandon ${o.name}`),
      );
    return h("tr", { "data-overlay": o.name }, h("td", {}, o.name), h("td", {}, who), h("td", {}, ...values), buttons);
  });
  render(
    h("h1", {}, `Overlays · ${ns}`),
    h("p", { class: "muted" }, "An overlay's values lie above this namespace's own for the clients whose labels it selects (X-Cfgd-Labels, the library's labels)."),
    overlays.length ? table("Overlays", ["Overlay", "Seen by", "Values", "Actions"], rows) : h("p", {}, "No overlays."),
  );
}
