// The namespaces page: those the token may read, as GET /v1/namespaces
// lists them.

import { api } from "./api.js";
import { enc, h, render, table } from "./dom.js";

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
      : h("p", {}, "No namespace you may read holds anything yet."),
  );
}
