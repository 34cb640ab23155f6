// Diffs as the server gives them, [{name, differences: [{op, path, …}]}]:
// from its …/diff routes, a release or a change request. The console
// computes none itself.

import { compact, h } from "./dom.js";

/** One difference as `cfgctl diff` prints it. */
function diffLine(d) {
  const at = d.path || "/";
  if (d.op === "added") return h("li", { class: "added" }, `+ ${at}: ${compact(d.value)}`);
  if (d.op === "removed") return h("li", { class: "removed" }, `- ${at}: ${compact(d.value)}`);
  return h("li", { class: "changed" }, `~ ${at}: ${compact(d.from)} → ${compact(d.to)}`);
}

const none = () => h("p", { class: "muted" }, "No differences.");

/** The differences of one name (the server's answer about it alone), as a
 * list named `label`. */
export function diffList(named, label) {
  const differences = named.flatMap((n) => n.differences);
  if (!differences.length) return none();
  return h("ul", { class: "diff", "aria-label": label }, differences.map(diffLine));
}

/** The differences of several names, each under its name. */
export function namedDiff(named, label) {
  if (!named.length) return none();
  return h(
    "ul",
    { class: "diff", "aria-label": label },
    named.flatMap((n) => [h("li", { class: "name" }, n.name), ...n.differences.map(diffLine)]),
  );
}
