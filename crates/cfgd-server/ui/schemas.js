// Schemas: the namespace's JSON Schemas, and an editor the server checks
// as one types (a valid schema that no stored value it governs fails).

import { api } from "./api.js";
import { announce, debounce, enc, encName, fill, h, pretty, render, showError, uid } from "./dom.js";
import { canAdmin, state } from "./state.js";

export async function schemasPage() {
  state.onChange = null;
  const ns = state.ns;
  const { data: schemas } = await api("GET", `/v1/namespaces/${enc(ns)}/schemas`);
  const editor = h("section", { "aria-label": "Schema editor" });
  const edit = (pattern, schema) => {
    const ids = { pattern: uid("pattern"), schema: uid("schema") };
    const p = h("input", { id: ids.pattern, value: pattern || "", readonly: pattern ? true : null });
    const text = h("textarea", { id: ids.schema, spellcheck: "false" }, pretty(schema || { type: "object" }));
    const problems = h("ul", { class: "problems", "aria-live": "polite", "aria-label": "Schema problems" });
    const save = h("button", { disabled: true }, "Save schema");
    let body;
    let seq = 0;
    // Checked by the server as one types: a valid schema, which no stored
    // value it would govern fails.
    const check = debounce(async () => {
      const mine = ++seq;
      save.disabled = true;
      fill(problems);
      try {
        body = JSON.parse(text.value);
      } catch (e) {
        problems.append(h("li", {}, `Not valid JSON: ${e.message}`));
        return;
      }
      if (!p.value.trim()) return problems.append(h("li", {}, "Give a pattern."));
      try {
        await api("PUT", `/v1/namespaces/${enc(ns)}/schemas/${encName(p.value.trim())}?dry_run=true`, { body });
        if (mine === seq) save.disabled = false;
      } catch (e) {
        if (mine === seq) problems.append(h("li", {}, e.message));
      }
    }, 250);
    text.addEventListener("input", check);
    p.addEventListener("input", check);
    save.addEventListener("click", async () => {
      try {
        await api("PUT", `/v1/namespaces/${enc(ns)}/schemas/${encName(p.value.trim())}`, { body });
        announce(`Schema ${p.value} saved.`);
        await schemasPage();
      } catch (e) {
        showError(e);
      }
    });
    fill(
      editor,
      h("h2", {}, pattern ? `Edit schema ${pattern}` : "New schema"),
      h("label", { for: ids.pattern }, "Pattern (a name, or a prefix ending in *)"),
      p,
      h("label", { for: ids.schema }, "JSON Schema"),
      text,
      problems,
      h("div", { class: "row" }, save),
    );
    (pattern ? text : p).focus();
    check();
  };
  const head = h("div", { class: "row" }, h("h1", {}, `Schemas · ${ns}`));
  if (canAdmin()) head.append(h("button", { class: "secondary", onclick: () => edit(null, null) }, "New schema"));
  render(
    head,
    schemas.length
      ? h(
          "div",
          {},
          schemas.map((s) =>
            h(
              "div",
              { class: "panel" },
              h("h2", {}, s.name),
              h("pre", { tabindex: 0, "aria-label": `Schema ${s.name}` }, pretty(s.value)),
              canAdmin() ? h("button", { class: "secondary", onclick: () => edit(s.name, s.value) }, `Edit ${s.name}`) : null,
            ),
          ),
        )
      : h("p", {}, "No schemas: any JSON value may be stored."),
    editor,
  );
}
