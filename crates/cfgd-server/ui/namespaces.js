// The namespaces page: those the token may read, as GET /v1/namespaces
// lists them.

import { api } from "./api.js";
import { enc, h, render, table } from "./dom.js";
import { state } from "./state.js";

export async function namespacesPage() {
  const { data } = await api("GET", "/v1/namespaces");
  render(
    h("h1", {}, "Namespaces"),
    data.length
      ? table(
          "Namespaces",
          ["Namespace", "Values", "Flags", "Access"],
          data.map((n) =>
            h("tr", {}, h("td", {}, h("a", { href: `#/ns/${enc(n.name)}/config` }, n.name)), h("td", {}, n.values), h("td", {}, n.flags), h("td", {}, n.scope)),
          ),
        )
      : h("p", { role: state.who && state.who.notice ? "status" : null }, state.who && state.who.notice ? capital(state.who.notice) : "No namespace you may read holds anything yet."),
  );
}

const capital = (text) => text.charAt(0).toUpperCase() + text.slice(1);
