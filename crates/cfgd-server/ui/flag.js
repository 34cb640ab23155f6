// One flag: its definition, the rollout sliders, its targeting checked by
// the server as one types, and an evaluation through OFREP.

import { api } from "./api.js";
import { announce, compact, debounce, enc, fill, h, pretty, showError, uid } from "./dom.js";
import { canWrite, state } from "./state.js";

/** Shows `flag` ({name, value, revision}) in `detail`; `reload` redraws
 * the flags page once a change is saved. */
export function flagDetail(detail, flag, reload) {
  const ns = state.ns;
  const def = flag.value;
  const variants = Object.keys(def.variants || {});
  const put = async (next, what) => {
    try {
      await api("PUT", `/v1/namespaces/${enc(ns)}/flags/${enc(flag.name)}`, { body: next, headers: { "If-Match": `"${flag.revision}"` } });
      announce(`${flag.name}: ${what} saved.`);
      await reload();
    } catch (e) {
      showError(e);
    }
  };
  const parts = [h("h2", {}, flag.name), h("pre", { tabindex: 0, "aria-label": `Definition of ${flag.name}` }, pretty(def))];

  // Rollout: one slider per variant, always summing to 100.
  const current = new Map(variants.map((v) => [v, 0]));
  const fractional = def.targeting && Array.isArray(def.targeting.fractional) ? def.targeting.fractional : null;
  if (fractional) {
    const buckets = fractional.filter((b) => Array.isArray(b) && typeof b[0] === "string");
    const total = buckets.reduce((s, b) => s + (Number(b[1]) || 0), 0) || 1;
    for (const [v, w] of buckets) if (current.has(v)) current.set(v, Math.round(((Number(w) || 0) * 100) / total));
  } else if (variants.length) {
    current.set(def.defaultVariant && current.has(def.defaultVariant) ? def.defaultVariant : variants[0], 100);
  }
  fixSum(current, null);
  const sliders = new Map();
  const outputs = new Map();
  const sync = () => {
    for (const [v, w] of current) {
      sliders.get(v).value = w;
      outputs.get(v).textContent = `${w}%`;
    }
  };
  const rollout = h("div", { class: "panel", role: "group", "aria-label": "Rollout" }, h("h3", {}, "Rollout"));
  for (const v of variants) {
    const id = uid("w");
    const slider = h("input", { id, type: "range", min: 0, max: 100, step: 1, value: current.get(v), disabled: !canWrite() });
    const output = h("output", { for: id }, `${current.get(v)}%`);
    slider.addEventListener("input", () => {
      current.set(v, Number(slider.value));
      fixSum(current, v);
      sync();
    });
    sliders.set(v, slider);
    outputs.set(v, output);
    rollout.append(h("div", { class: "slider" }, h("label", { for: id }, `${v} %`), slider, output));
  }
  if (canWrite() && variants.length)
    rollout.append(
      h("div", { class: "row" }, h("button", {
        onclick: () => put({ ...def, targeting: { fractional: [...current].map(([v, w]) => [v, w]) } }, "rollout"),
      }, "Save rollout")),
    );
  parts.push(rollout);

  // Targeting, checked by the server as one types.
  if (canWrite()) {
    const id = uid("targeting");
    const text = h("textarea", { id, spellcheck: "false" }, pretty(def.targeting || {}));
    const problems = h("ul", { class: "problems", "aria-live": "polite", "aria-label": "Targeting problems" });
    const save = h("button", {}, "Save targeting");
    let next = null;
    const check = debounce(async () => {
      fill(problems);
      save.disabled = true;
      let targeting;
      try {
        targeting = JSON.parse(text.value);
      } catch (e) {
        problems.append(h("li", {}, `Not valid JSON: ${e.message}`));
        return;
      }
      next = { ...def, targeting };
      if (!targeting || (typeof targeting === "object" && !Array.isArray(targeting) && !Object.keys(targeting).length)) delete next.targeting;
      try {
        await api("PUT", `/v1/namespaces/${enc(ns)}/flags/${enc(flag.name)}?dry_run=true`, { body: next });
        save.disabled = false;
      } catch (e) {
        problems.append(h("li", {}, e.message));
      }
    }, 250);
    text.addEventListener("input", check);
    save.addEventListener("click", () => next && put(next, "targeting"));
    save.disabled = true;
    parts.push(h("div", { class: "panel" }, h("h3", {}, "Targeting"), h("label", { for: id }, "Targeting (JSON Logic)"), text, problems, h("div", { class: "row" }, save)));
  }

  // Evaluate as a service would, through OFREP.
  const ctxId = uid("context");
  const context = h("textarea", { id: ctxId, spellcheck: "false", rows: 4 }, pretty({ targetingKey: "user-1" }));
  const result = h("dl", { class: "meta", "aria-live": "polite", "aria-label": "Evaluation result" });
  const evaluate = async () => {
    fill(result);
    let ctx;
    try {
      ctx = JSON.parse(context.value);
    } catch (e) {
      return showError(new Error(`The context is not valid JSON: ${e.message}`));
    }
    try {
      const { data } = await api("POST", `/ofrep/v1/evaluate/flags/${enc(flag.name)}`, { body: { context: ctx }, headers: { "X-Cfgd-Namespace": ns } });
      result.append(h("dt", {}, "Value"), h("dd", {}, compact(data.value)), h("dt", {}, "Variant"), h("dd", {}, data.variant ?? ""), h("dt", {}, "Reason"), h("dd", {}, data.reason ?? ""));
    } catch (e) {
      result.append(h("dt", {}, "Error"), h("dd", {}, e.message));
    }
  };
  parts.push(h("div", { class: "panel" }, h("h3", {}, "Evaluate"), h("label", { for: ctxId }, "Evaluation context (JSON)"), context, h("div", { class: "row" }, h("button", { onclick: evaluate }, "Evaluate")), result));
  fill(detail, ...parts);
}

/** Makes the weights sum to 100, moving the ones other than `fixed` in
 * proportion to what they hold. */
function fixSum(weights, fixed) {
  const others = [...weights.keys()].filter((k) => k !== fixed);
  if (!others.length) {
    if (fixed !== null) weights.set(fixed, 100);
    return;
  }
  const want = 100 - (fixed === null ? 0 : weights.get(fixed));
  const have = others.reduce((s, k) => s + weights.get(k), 0);
  let given = 0;
  others.forEach((k, i) => {
    let w;
    if (i === others.length - 1) w = want - given;
    else w = have ? Math.floor((weights.get(k) * want) / have) : Math.floor(want / others.length);
    weights.set(k, w);
    given += w;
  });
}
