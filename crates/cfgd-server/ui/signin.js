// The sign-in page: a bearer token, checked with GET /v1/whoami before it
// is kept (in this tab only).

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
}
