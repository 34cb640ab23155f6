// Webhooks and schedules: what the elected cfgd replica does on its own.
// Webhooks: add one (its secret is shown once), each one's cursor, failed
// events and last attempts, a test, a replay, removal. Schedules: when
// each applies, what became of it, and cancelling a pending one.

import { api } from "./api.js";
import { confirmDialog, enc, h, render, showError, table, uid, when } from "./dom.js";
import { canAdmin, canWrite, state } from "./state.js";

const EVENTS = [
  "io.cfgd.config.changed",
  "io.cfgd.release.published",
  "io.cfgd.request.opened",
  "io.cfgd.request.approved",
  "io.cfgd.request.closed",
  "io.cfgd.schedule.created",
  "io.cfgd.schedule.suspended",
  "io.cfgd.schedule.cancelled",
  "io.cfgd.webhook.failed",
];

export async function workersPage() {
  state.onChange = null;
  const ns = state.ns;
  const base = `/v1/namespaces/${enc(ns)}`;
  const [{ data: hooks }, { data: schedules }] = await Promise.all([api("GET", `${base}/webhooks`), api("GET", `${base}/schedules`)]);
  const shown = await Promise.all(hooks.map((w) => api("GET", `${base}/webhooks/${enc(w.id)}`).then((r) => r.data)));
  const detail = h("section", { "aria-label": "Webhook deliveries" });
  const act = (fn) => async () => {
    try {
      await fn();
    } catch (e) {
      showError(e);
    }
  };
  const hookRows = shown.map((w) => {
    const buttons = h("td", {});
    buttons.append(h("button", { class: "secondary", onclick: act(() => deliveries(base, w.id, detail)) }, `Deliveries of ${w.id}`));
    if (canAdmin())
      buttons.append(
        h("button", {
          onclick: act(async () => {
            const { data } = await api("POST", `${base}/webhooks/${enc(w.id)}/test`);
            await deliveries(base, w.id, detail, data.status ? `Test answered ${data.status}` : `Test failed: ${data.error}`);
          }),
        }, `Test ${w.id}`),
        h("button", {
          class: "danger",
          onclick: act(async () => {
            if (!(await confirmDialog(`Remove webhook ${w.id}?`, `Nothing more is sent to ${w.url}.`, "Remove"))) return;
            await api("DELETE", `${base}/webhooks/${enc(w.id)}`);
            await workersPage();
          }),
        }, `Remove ${w.id}`),
      );
    const failed = w.failed.length ? h("span", { class: "bad" }, `${w.failed.length} failed (last: revision ${w.failed[w.failed.length - 1].revision})`) : "none";
    return h(
      "tr",
      { "data-webhook": w.id },
      h("td", {}, w.id),
      h("td", {}, h("code", {}, w.url)),
      h("td", {}, w.events.length ? w.events.join(", ") : "all"),
      h("td", {}, w.prefix || "any"),
      h("td", {}, w.cursor),
      h("td", {}, failed),
      buttons,
    );
  });
  const scheduleRows = schedules.map((s) => {
    const what = s.request
      ? `change request ${s.request}`
      : [...Object.keys(s.config || {}), ...Object.keys((s.flags || {}).flags || {}).map((f) => `flags/${f}`)].join(", ") + (s.percent != null ? ` to ${s.percent}%` : "");
    const outcome = s.state === "suspended" ? `${s.reason}` : s.release ? `release ${s.release}` : s.reason || "";
    const buttons = h("td", {});
    if (canWrite() && s.state === "pending")
      buttons.append(
        h("button", {
          class: "danger",
          onclick: act(async () => {
            if (!(await confirmDialog(`Cancel schedule ${s.id}?`, "It will not be applied.", "Cancel schedule"))) return;
            await api("POST", `${base}/schedules/${enc(s.id)}/cancel`);
            await workersPage();
          }),
        }, `Cancel ${s.id}`),
      );
    return h("tr", { "data-schedule": s.id }, h("td", {}, s.id), h("td", {}, when(s.at_ms)), h("td", {}, s.state), h("td", {}, what), h("td", {}, outcome), buttons);
  });
  render(
    h("h1", {}, `Webhooks and schedules · ${ns}`),
    h("p", { class: "muted" }, "The elected cfgd replica sends every change to each webhook, signed (Standard Webhooks) as a CloudEvent, and applies schedules at their time."),
    h("h2", {}, "Webhooks"),
    shown.length ? table("Webhooks", ["Webhook", "URL", "Events", "Names", "Cursor", "Failed", "Actions"], hookRows) : h("p", {}, "No webhooks."),
    canAdmin() ? addForm(base) : null,
    detail,
    h("h2", {}, "Schedules"),
    schedules.length ? table("Schedules", ["Schedule", "At", "State", "What", "Outcome", "Actions"], scheduleRows) : h("p", {}, "No schedules."),
  );
}

/** The form that adds a webhook; its secret is shown once. */
function addForm(base) {
  const ids = { url: uid("url"), prefix: uid("prefix"), format: uid("format") };
  const url = h("input", { id: ids.url, type: "url", required: true, placeholder: "http://hooks.example/cfgd" });
  const prefix = h("input", { id: ids.prefix, placeholder: "any name" });
  const format = h("select", { id: ids.format }, h("option", { value: "cloudevents" }, "CloudEvents"), h("option", { value: "slack" }, "Slack"));
  const boxes = EVENTS.map((e) => h("label", {}, h("input", { type: "checkbox", value: e }), ` ${e}`));
  const form = h(
    "form",
    {
      "aria-label": "Add a webhook",
      onsubmit: async (ev) => {
        ev.preventDefault();
        try {
          const events = boxes.map((b) => b.querySelector("input")).filter((i) => i.checked).map((i) => i.value);
          const { data } = await api("POST", `${base}/webhooks`, { body: { url: url.value, prefix: prefix.value, format: format.value, events } });
          await workersPage();
          document.querySelector("main").prepend(
            h("p", { role: "status", class: "notice" }, `Webhook ${data.id} added. Its signing secret, shown only now: `, h("code", { "aria-label": "Signing secret" }, data.secret)),
          );
        } catch (e) {
          showError(e);
        }
      },
    },
    h("h3", {}, "Add a webhook"),
    h("label", { for: ids.url }, "Receiver URL"),
    url,
    h("label", { for: ids.prefix }, "Only names starting with"),
    prefix,
    h("label", { for: ids.format }, "Format"),
    format,
    h("fieldset", {}, h("legend", {}, "Event types (none: all)"), ...boxes),
    h("button", { type: "submit" }, "Add webhook"),
  );
  return form;
}

/** A webhook's last attempts, with a replay from a revision. */
async function deliveries(base, id, into, note) {
  const { data: attempts } = await api("GET", `${base}/webhooks/${enc(id)}/deliveries`);
  const rows = attempts.map((a) =>
    h(
      "tr",
      {},
      h("td", {}, when(a.time_ms)),
      h("td", {}, a.event_type),
      h("td", {}, a.revision || ""),
      h("td", {}, a.attempt),
      h("td", {}, a.status ?? ""),
      h("td", {}, `${a.latency_ms.toFixed(1)} ms`),
      h("td", {}, a.error || ""),
      h("td", {}, a.replica),
    ),
  );
  const fromId = uid("from");
  const from = h("input", { id: fromId, type: "number", min: 1, required: true });
  const replay = h(
    "form",
    {
      "aria-label": `Replay ${id}`,
      onsubmit: async (ev) => {
        ev.preventDefault();
        try {
          await api("POST", `${base}/webhooks/${enc(id)}/replay?from=${enc(from.value)}`);
          await deliveries(base, id, into, `Replaying from revision ${from.value}`);
        } catch (e) {
          showError(e);
        }
      },
    },
    h("label", { for: fromId }, "Deliver again from revision"),
    from,
    h("button", { type: "submit" }, "Replay"),
  );
  into.replaceChildren(
    h("h3", {}, `Deliveries of ${id}`),
    note ? h("p", { role: "status" }, note) : "",
    attempts.length ? table(`Attempts of ${id}`, ["When", "Event", "Revision", "Try", "Status", "Latency", "Error", "Replica"], rows) : h("p", {}, "No attempts yet."),
    canAdmin() ? replay : "",
    h("p", { class: "muted" }, "The last 100 attempts are kept."),
  );
}
