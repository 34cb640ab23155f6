// cfgd console: pages over cfgd's REST API, served by cfgd itself. No
// framework and no build step: what is here is what the browser runs, as
// ES modules. This one routes; each page is a module of its own. Every
// rule (schemas, the policy, approvals) and every diff is the server's;
// the pages only show what the server says.

import { api, forgetToken, hasToken, setCsrf } from "./api.js";
import { auditPage } from "./audit.js";
import { configPage } from "./config.js";
import { $, enc, fill, h, showError } from "./dom.js";
import { flagsPage } from "./flags.js";
import { historyPage } from "./history.js";
import { enter, stopFlagLive, stopLive } from "./live.js";
import { namespacesPage } from "./namespaces.js";
import { overlaysPage } from "./overlays.js";
import { releasesPage } from "./releases.js";
import { requestsPage } from "./requests.js";
import { schemasPage } from "./schemas.js";
import { signInPage } from "./signin.js";
import { state } from "./state.js";
import { workersPage } from "./workers.js";

const pages = {
  config: (rest) => configPage(rest || null),
  history: (rest) => historyPage(rest),
  flags: (rest) => flagsPage(rest || null),
  audit: () => auditPage(),
  releases: (rest) => releasesPage(rest || null),
  requests: (rest) => requestsPage(rest || null),
  schemas: () => schemasPage(),
  overlays: () => overlaysPage(),
  workers: () => workersPage(),
};

/** Shows the page the URL's hash names: #/ns/NS/PAGE/REST. */
function route() {
  showError(null);
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (state.who === null) {
    nav(null);
    return signInPage(() => {
      whoBar();
      route();
    });
  }
  if (parts[0] !== "ns" || !parts[1]) {
    stopLive();
    state.ns = null;
    nav(null);
    return namespacesPage().catch(showError);
  }
  const ns = parts[1];
  const page = pages[parts[2]] ? parts[2] : "config";
  const rest = parts.slice(3).join("/");
  if (page !== "flags") stopFlagLive();
  enter(ns).then(() => {
    nav(page);
    pages[page](rest).catch(showError);
  }, showError);
}

function nav(current) {
  const ns = state.ns;
  const items = [
    ["config", "Config"],
    ["flags", "Flags"],
    ["audit", "Audit log"],
    ["releases", "Releases"],
    ["requests", "Change requests"],
    ["schemas", "Schemas"],
    ["overlays", "Overlays"],
    ["workers", "Webhooks & schedules"],
  ];
  const here = (p) => current === p || (current === "history" && p === "config");
  fill(
    $("nav"),
    h("a", { href: "#/" }, "Namespaces"),
    ...(ns ? items.map(([p, label]) => h("a", { href: `#/ns/${enc(ns)}/${p}`, "aria-current": here(p) ? "page" : null }, label)) : []),
  );
}

function whoBar() {
  const who = state.who;
  if (!who) return fill($("who"));
  const parts = [h("span", {}, who.auth ? `Signed in as ${who.name}` : "No sign-in (--no-auth)")];
  if (who.auth)
    parts.push(
      h(
        "button",
        {
          class: "secondary",
          onclick: async () => {
            if (who.via === "session") {
              try {
                await api("POST", "/oidc/logout");
              } catch (e) {
                return showError(e);
              }
            }
            forgetToken();
            state.who = null;
            stopLive();
            location.hash = "#/";
            whoBar();
            route();
          },
        },
        "Sign out",
      ),
    );
  fill($("who"), ...parts);
}

async function start() {
  try {
    const { data } = await api("GET", "/v1/whoami");
    state.who = data;
    setCsrf(data.csrf);
  } catch (e) {
    if (e.status !== 401) showError(e);
    state.who = null;
    if (hasToken()) forgetToken();
  }
  whoBar();
  route();
}

window.addEventListener("hashchange", route);
start();
