// The sign-in page: single sign-on when the server has an [oidc] issuer
// (GET /oidc says so; the server runs the whole flow and sets a session
// cookie), or a bearer token, checked with GET /v1/whoami before it is
// kept (in this tab only).

import { api, setToken } from "./api.js";
import { h, render, showError } from "./dom.js";
import { state } from "./state.js";

/** Asks for a token; `signedIn` runs once the server knows it. */
export function signInPage(signedIn) {
  const input = h("input", { id: "token", type: "password", autocomplete: "current-password", required: true });
  const form = h(
    "form",
    {
      class: "signin panel",
      onsubmit: async (ev) => {
        ev.preventDefault();
        const token = input.value.trim();
        setToken(token);
        try {
          const { data } = await api("GET", "/v1/whoami");
          setToken(token, true);
          state.who = data;
          signedIn();
        } catch (e) {
          setToken(null);
          showError(e);
        }
      },
    },
    h("h1", {}, "Sign in to cfgd"),
    h("label", { for: "token" }, "Token"),
    input,
    h("p", { class: "muted" }, "The bearer token from cfgd's settings. It is kept in this tab only."),
    h("button", { type: "submit" }, "Sign in"),
  );
  render(form);
  input.focus();
  offerSso(form);
}

/** Puts "Sign in with SSO" above the token form, if the server has SSO. */
async function offerSso(form) {
  let sso = null;
  try {
    sso = (await api("GET", "/oidc")).data;
  } catch {
    return; // an older server: tokens only
  }
  if (!sso || !sso.enabled) return;
  const back = `/ui/${location.hash}`;
  const link = h("a", { class: "button", href: `${sso.login}?return_to=${encodeURIComponent(back)}` }, "Sign in with SSO");
  form.querySelector("h1").after(h("p", {}, link), h("p", { class: "muted" }, `With ${sso.issuer}, or with a token:`));
}
