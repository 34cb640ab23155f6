// The editor of a value: syntax checked as one types, the schema through
// the server's dry run, the changes as the server's diff answers them;
// then publish with a message, compare-and-set on the revision the edit
// began from, or open a change request where the policy says so.

import { api, diffEdit, diffRevisions, policyOf } from "./api.js";
import { diffList } from "./diff.js";
import { announce, debounce, enc, encName, fill, h, pretty, showError, uid } from "./dom.js";
import { state } from "./state.js";

/** Edits `name` in `detail`. `facts`: what the policy says of it, if
 * already asked; `done`: shows the value again, once published or given up;
 * `initial`: what the editor starts with, when not the stored value (the
 * namespace's own layer, to override one field of an inherited value). */
export function editValue(detail, name, { fresh = false, facts, done, initial }) {
  const ns = state.ns;
  const path = `/v1/namespaces/${enc(ns)}/config/${encName(name)}`;
  const entry = state.values.get(name);
  // A secret's editor starts empty: its value is never put in the page.
  const secret = !!entry?.secret;
  const editor = { name, base: entry ? entry.revision : 0, moved: null };
  state.editor = editor;
  const policy = facts || policyOf(ns, name);
  let prot = null;
  let policySecret = false;
  const ids = { text: uid("value"), msg: uid("message"), changes: uid("changes") };
  const text = h("textarea", { id: ids.text, spellcheck: "false", "aria-describedby": `${ids.text}-problems` }, initial !== undefined ? pretty(initial) : entry && !secret ? pretty(entry.value) : "");
  const problems = h("ul", { id: `${ids.text}-problems`, class: "problems", "aria-live": "polite", "aria-label": "Problems" });
  const changesBody = h("div", {});
  const changes = h("section", { "aria-live": "polite", "aria-labelledby": ids.changes, hidden: true }, h("h3", { id: ids.changes }, "Changes against what is stored"), changesBody);
  const message = h("input", { id: ids.msg, placeholder: "why" });
  const moved = h("div", {});
  const notice = h("div", {});
  const publish = h("button", { disabled: true }, "Publish");
  const request = h("button", { class: "secondary", disabled: true }, "Open change request");
  const enable = (on) => {
    publish.disabled = !on;
    request.disabled = !on;
  };
  const messageHeaders = () => (message.value ? { "X-Cfgd-Message": message.value } : {});
  // A protected name is published through a change request only.
  const known = policy.then((f) => {
    prot = f.protected;
    policySecret = f.secret;
    if (!prot) return;
    publish.textContent = "Open change request";
    request.remove();
    fill(notice, h("p", { class: "notice" }, `Protected by the policy (${prot}): publishing opens a change request.`));
  });
  known.catch(showError);
  let parsed;
  let checkSeq = 0;
  const check = async () => {
    const seq = ++checkSeq;
    enable(false);
    fill(problems);
    const typed = text.value;
    try {
      parsed = JSON.parse(typed);
    } catch (e) {
      parsed = undefined;
      problems.append(h("li", {}, `Not valid JSON: ${e.message}`));
      changes.hidden = true;
      return;
    }
    const [diffed, dry, ready] = await Promise.allSettled([diffEdit(ns, name, typed), api("PUT", `${path}?dry_run=true`, { body: typed, raw: true }), known]);
    if (seq !== checkSeq) return;
    if (diffed.status === "fulfilled") {
      fill(changesBody, diffList(diffed.value, "Changes"));
      changes.hidden = false;
    } else {
      changes.hidden = true;
      problems.append(h("li", {}, diffed.reason.message));
    }
    if (dry.status === "rejected") {
      const e = dry.reason;
      if (e.failures.length) problems.append(...e.failures.map((f) => h("li", {}, `${f.pointer || "/"}: ${f.message}`)));
      else if (diffed.status === "fulfilled" || diffed.reason.message !== e.message) problems.append(h("li", {}, e.message));
      return;
    }
    if (diffed.status === "fulfilled" && ready.status === "fulfilled") enable(diffed.value.length > 0);
  };
  const checkSoon = debounce(check, 250);
  text.addEventListener("input", () => {
    enable(false);
    checkSoon();
  });
  const openRequest = async () => {
    try {
      // The value as typed, key order and all.
      const body = `{"config": {${JSON.stringify(name)}: ${text.value}}}`;
      const { data } = await api("POST", `/v1/namespaces/${enc(ns)}/requests`, { body, raw: true, headers: { "Content-Type": "application/json", ...messageHeaders() } });
      state.editor = null;
      location.hash = `#/ns/${enc(ns)}/requests/${data.id}`;
    } catch (e) {
      showError(e);
    }
  };
  publish.addEventListener("click", async () => {
    if (prot) return openRequest();
    publish.disabled = true;
    // A new name is created only if it still does not exist.
    const guard = editor.base ? { "If-Match": `"${editor.base}"` } : { "If-None-Match": "*" };
    const headers = { ...guard, ...messageHeaders() };
    try {
      const { data } = await api("PUT", path, { body: text.value, raw: true, headers });
      const before = state.values.get(name);
      const hidden = secret || policySecret;
      // In a namespace that extends others the write is this layer's
      // part: what reads now give is the merge, which the server says.
      let value = parsed;
      if (!hidden && initial !== undefined) value = (await api("GET", path)).data;
      state.values.set(name, { name, value: hidden ? "<redacted>" : value, secret: hidden, revision: data.revision, version: (before?.version || 0) + 1 });
      state.editor = null;
      announce(`Published ${name} at revision ${data.revision}.`);
      done();
    } catch (e) {
      if (e.status === 412) return conflict();
      showError(e);
      publish.disabled = false;
    }
  });
  request.addEventListener("click", openRequest);
  // Someone published meanwhile: show their change and ours against it,
  // both as the server diffs them; nothing is overwritten unless asked
  // for, again, on their revision.
  const conflict = async () => {
    let theirs;
    let ours;
    try {
      [theirs, ours] = await Promise.all([diffRevisions(ns, name, editor.base), diffEdit(ns, name, text.value)]);
    } catch (e) {
      return showError(e);
    }
    fill(
      moved,
      h(
        "div",
        { class: "notice", role: "alert" },
        h("h3", {}, "Someone else published meanwhile"),
        h("p", {}, `${name} is at revision ${theirs.revision} now, not ${editor.base}. Nothing was written.`),
        h("h3", {}, "Their change"),
        diffList(theirs.changes, "Their change"),
        h("h3", {}, "Your edit against theirs"),
        diffList(ours, "Your edit against theirs"),
        h(
          "div",
          { class: "row" },
          h(
            "button",
            {
              onclick: () => {
                editor.base = theirs.revision;
                fill(moved, h("p", { class: "muted" }, `Your edit now applies on top of revision ${theirs.revision}; publish again to store it.`));
                check();
              },
            },
            "Keep my edit on top of theirs",
          ),
          h("button", { class: "secondary", onclick: cancel }, "Discard my edit"),
        ),
      ),
    );
  };
  editor.moved = (change) => {
    fill(moved, h("p", { class: "notice", role: "status" }, `This value changed underneath you: revision ${change.revision} was published while you edit. Publishing will show you both changes.`));
    // The changes are against what is stored, which just moved.
    check();
  };
  function cancel() {
    state.editor = null;
    done();
  }
  fill(
    detail,
    h("h2", {}, fresh ? `New value: ${name}` : `Edit ${name}`),
    moved,
    notice,
    secret ? h("p", { class: "notice" }, "A secret: its current value is not shown; what you publish replaces it.") : null,
    h("label", { for: ids.text }, "Value (JSON)"),
    text,
    problems,
    changes,
    h("label", { for: ids.msg }, "Message"),
    message,
    h("div", { class: "row" }, publish, request, h("button", { class: "secondary", onclick: cancel }, "Cancel")),
  );
  text.focus();
  check();
}
