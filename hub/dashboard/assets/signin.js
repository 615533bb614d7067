// The sign-in view: an API token, traded once for the HttpOnly session
// cookie; the page never keeps the token.

import { signIn } from "./api.js";
import { h } from "./dom.js";

// signInView renders the form into view and calls onSignedIn once the hub
// accepted the token. It returns {stop}.
export function signInView(view, onSignedIn) {
  const error = h("p", { id: "signin-error", class: "problem", role: "alert" });
  const token = h("input", { id: "token", name: "token", type: "password", autocomplete: "current-password", required: true });
  const submit = h("button", { type: "submit" }, "Sign in");
  // method post: were the script's handler ever skipped, the browser
  // would post the token rather than put it in the address bar.
  const form = h("form", { id: "signin", method: "post", on: { submit: async (e) => {
    e.preventDefault();
    error.textContent = "";
    submit.disabled = true;
    try {
      await signIn(token.value);
      token.value = "";
      onSignedIn();
    } catch (err) {
      error.textContent = err.message || "The hub refused the token.";
      token.focus();
      token.select();
    } finally {
      submit.disabled = false;
    }
  } } },
  h("div", { class: "field" }, h("label", { for: "token" }, "API token"), token),
  submit);
  view.replaceChildren(
    h("h1", { tabindex: "-1" }, "Sign in to Flotilla"),
    h("p", {}, "Sign in with an API token from the hub's configuration, the one the flotilla CLI uses. The browser keeps a session cookie, not the token."),
    form,
    error);
  return { stop: () => {}, signIn: true };
}
