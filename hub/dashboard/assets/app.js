// The dashboard's entry point: signs in, opens the live stream, and shows
// the view the location's hash names (#/, #/clusters, #/events,
// #/rollouts, #/rollouts/<name>, #/apps/<app>), with the header's session
// and connection state.

import { call, onUnauthenticated, signOut } from "./api.js";
import { applicationView } from "./application.js";
import { showOutcome } from "./actions.js";
import { clustersView } from "./clusters.js";
import { wireConfirmDialog } from "./dialog.js";
import { h, setText } from "./dom.js";
import { eventsView } from "./events.js";
import { fleetView } from "./fleet.js";
import { fleetRolloutView, fleetRolloutsView } from "./fleetrollouts.js";
import { startLive } from "./live.js";
import { signInView } from "./signin.js";
import { fleet } from "./store.js";
import { formatTime } from "./words.js";

const main = document.getElementById("main");
const viewEl = document.getElementById("view");
const connection = document.getElementById("connection");
const staleNote = document.getElementById("stale-note");
const outcome = document.getElementById("outcome");
const signedIn = document.getElementById("signed-in");

let session = null; // WhoAmI's answer while signed in
let current = null; // the shown view's {stop}
let stopLive = null;
let startTimer = 0;

// Retrying WhoAmI while the hub is unreachable at load waits as long as
// the stream's reconnects do.
const firstRetryMs = 1000;
const lastRetryMs = 15000;
let retryMs = firstRetryMs;

// route is the view a location hash names.
function route(hash) {
  const path = hash.replace(/^#/, "") || "/";
  if (path === "/") return { nav: "fleet", title: "Fleet", show: (view) => fleetView(view) };
  if (path === "/clusters") return { nav: "clusters", title: "Clusters", show: (view) => clustersView(view) };
  if (path === "/events") return { nav: "events", title: "Events", show: (view) => eventsView(view) };
  if (path === "/rollouts") return { nav: "rollouts", title: "Fleet rollouts", show: (view) => fleetRolloutsView(view) };
  const rolloutPath = /^\/rollouts\/(.+)$/.exec(path);
  if (rolloutPath) {
    try {
      const name = decodeURIComponent(rolloutPath[1]);
      return { nav: "rollouts", title: `Fleet rollout ${name}`, show: (view) => fleetRolloutView(view, { name }, session) };
    } catch {
      // A malformed escape: not a rollout's page.
    }
  }
  const appPath = /^\/apps\/(.+)$/.exec(path);
  if (appPath) {
    try {
      const app = decodeURIComponent(appPath[1]);
      return { nav: "fleet", title: app, show: (view) => applicationView(view, { app }, session) };
    } catch {
      // A malformed escape: not an application's page.
    }
  }
  return { nav: null, title: "Not found", show: notFoundView };
}

function notFoundView(view) {
  view.replaceChildren(h("h1", { tabindex: "-1" }, "Page not found"),
    h("p", {}, "The dashboard has no page at this address. ", h("a", { href: "#/" }, "Go to the fleet"), "."));
  return { stop: () => {} };
}

// showRoute replaces the view with the one the hash names; after a
// navigation it moves the focus to its heading, so that a screen reader
// starts reading there.
function showRoute(navigated) {
  if (!session) return;
  current?.stop();
  const r = route(location.hash);
  document.title = `${r.title} · Flotilla`;
  for (const link of document.querySelectorAll("nav a[data-nav]")) {
    if (link.dataset.nav === r.nav) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  current = r.show(viewEl);
  if (navigated) viewEl.querySelector("h1")?.focus();
}

// start asks who the session is and, signed in, opens the stream and
// shows the view; focusView moves the focus to it (after signing in).
async function start(focusView = false) {
  clearTimeout(startTimer);
  if (retryMs === firstRetryMs) setConnection("connecting", "Connecting to the hub…");
  try {
    session = await call("WhoAmI", {});
  } catch (err) {
    if (err.code === "unauthenticated") return; // onUnauthenticated showed the sign-in form
    staleNote.textContent = "";
    setConnection("lost", "Cannot reach the hub — trying again…");
    viewEl.replaceChildren(h("h1", { tabindex: "-1" }, "Flotilla"), h("p", { class: "problem" }, `The hub did not answer: ${err.message}`));
    startTimer = setTimeout(() => start(focusView), retryMs);
    retryMs = Math.min(retryMs * 2, lastRetryMs);
    return;
  }
  retryMs = firstRetryMs;
  document.getElementById("whoami").textContent = `${session.name ?? "?"} (${session.role ?? "no role"})`;
  signedIn.hidden = false;
  stopLive = startLive(onConnection);
  showRoute(focusView);
}

function onConnection(state) {
  if (state.state === "live") {
    setConnection("live", "Live");
    return;
  }
  const at = formatTime(state.since);
  staleNote.textContent = `Stale: showing what the hub last sent before ${at} (${state.reason}).`;
  setConnection("lost", `Lost the hub at ${at} — reconnecting…`);
}

// setConnection shows the connection state in the header's live region,
// and marks the page stale while the hub is lost.
function setConnection(state, words) {
  setText(connection, words);
  document.body.dataset.connection = state;
  main.classList.toggle("stale", state === "lost");
  staleNote.hidden = state !== "lost" || !staleNote.textContent;
}

function showSignIn() {
  if (current?.signIn) return;
  clearTimeout(startTimer);
  stopLive?.();
  stopLive = null;
  current?.stop();
  session = null;
  fleet.clear();
  signedIn.hidden = true;
  outcome.replaceChildren();
  staleNote.textContent = "";
  setConnection("signed-out", "");
  document.title = "Sign in · Flotilla";
  current = signInView(viewEl, () => {
    current = null;
    start(true);
  });
}

onUnauthenticated(showSignIn);
wireConfirmDialog();

window.addEventListener("hashchange", () => {
  // Only #/... names a view; other fragments (the skip link's) do not.
  if (!location.hash || location.hash.startsWith("#/")) {
    outcome.replaceChildren();
    showRoute(true);
  }
});

document.querySelector(".skip-link").addEventListener("click", (e) => {
  e.preventDefault();
  main.focus();
});

document.getElementById("signout").addEventListener("click", async () => {
  try {
    await signOut();
  } catch (err) {
    showOutcome(`Sign out failed: ${err.message}`, [], true);
    return;
  }
  showSignIn();
});

start();
