// Building the page: elements, text, the shared alert and announcement
// areas, and the confirmation dialog.

/** Builds an element: h("a", {href: "#"}, "text", child, ...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

export const $ = (id) => document.getElementById(id);
export const pretty = (v) => JSON.stringify(v, null, 2);
export const compact = (v) => JSON.stringify(v);
export const enc = encodeURIComponent;
/** A name in a URL path: its segments encoded, its slashes kept. */
export const encName = (name) => name.split("/").map(enc).join("/");
let idSeq = 0;
export const uid = (p) => `${p}-${++idSeq}`;

export function when(ms) {
  return ms ? new Date(ms).toLocaleString() : "";
}

export function showError(e) {
  $("error").textContent = e ? (e.message || String(e)).split("\n")[0] : "";
}

export function announce(text) {
  $("announce").textContent = text;
}

export function debounce(fn, ms) {
  let t;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
}

/** Replaces `el`'s children, skipping the absent ones (null, false). */
export function fill(el, ...nodes) {
  el.replaceChildren(...nodes.flat().filter((n) => n !== null && n !== undefined && n !== false));
}

/** Replaces the page's main content. */
export function render(...nodes) {
  fill($("main"), ...nodes);
}

/** A table in a focusable, labelled region: `heads` are the column
 * titles, `rows` the <tr> elements. */
export function table(label, heads, rows, attrs = {}) {
  return h(
    "div",
    { class: "table-wrap", tabindex: 0, role: "region", "aria-label": label, ...attrs },
    h("table", {}, h("thead", {}, h("tr", {}, ...heads.map((t) => h("th", {}, t)))), h("tbody", {}, rows)),
  );
}

/** A confirmation in a modal dialog; resolves true when confirmed. */
export function confirmDialog(title, text, action) {
  return new Promise((resolve) => {
    const titleId = uid("dlg");
    const dialog = h(
      "dialog",
      { "aria-labelledby": titleId },
      h("h2", { id: titleId }, title),
      h("p", {}, text),
      h(
        "div",
        { class: "row" },
        h("button", { class: "danger", onclick: () => close(true) }, action),
        h("button", { class: "secondary", onclick: () => close(false) }, "Cancel"),
      ),
    );
    function close(ok) {
      dialog.close();
      dialog.remove();
      resolve(ok);
    }
    dialog.addEventListener("cancel", () => resolve(false));
    document.body.append(dialog);
    dialog.showModal();
  });
}
