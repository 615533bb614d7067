// The events view (#/events): the sync history and audit stream, newest
// first, as `flotilla events` lists it. The application and cluster
// filters go to the hub (ListEvents); type and actor filter here. New
// events arrive from the stream.

import { call } from "./api.js";
import { debounce, h, onNextFrame, replaceKeepingFocus, setText, timeEl } from "./dom.js";
import { fleet } from "./store.js";
import { enumWord, formatCount, oneLine } from "./words.js";

// How many events the page loads, and keeps as new ones arrive.
const loadLimit = 500;
const keepLimit = 1000;

// eventsView renders into view and returns {stop}.
export function eventsView(view) {
  let events = []; // newest first
  let ids = new Set();
  let loading = null; // events that arrived during a load, or null
  let loadError = null;
  let loads = 0;
  let stopped = false;

  const serverFilterChanged = debounce(() => load(), 400);
  const appInput = h("input", { id: "events-app", name: "app", type: "search", list: "events-app-names", autocomplete: "off", on: { input: serverFilterChanged } });
  const clusterInput = h("input", { id: "events-cluster", name: "cluster", type: "search", list: "events-cluster-names", autocomplete: "off", on: { input: serverFilterChanged } });
  const typeSelect = h("select", { id: "events-type", name: "type", on: { change: () => render() } },
    h("option", { value: "all" }, "All"), h("option", { value: "Normal" }, "Normal"), h("option", { value: "Warning" }, "Warning"));
  const actorInput = h("input", { id: "events-actor", name: "actor", type: "search", list: "events-actor-names", autocomplete: "off", on: { input: () => render() } });
  const appNames = h("datalist", { id: "events-app-names" });
  const clusterNames = h("datalist", { id: "events-cluster-names" });
  const actorNames = h("datalist", { id: "events-actor-names" });
  const count = h("p", { class: "summary", role: "status" });
  const list = h("div");

  view.replaceChildren(
    h("h1", { tabindex: "-1" }, "Events"),
    h("form", { class: "filters", role: "search", "aria-label": "Filter the events", on: { submit: (e) => e.preventDefault() } },
      h("div", { class: "field" }, h("label", { for: "events-app" }, "Application"), appInput),
      h("div", { class: "field" }, h("label", { for: "events-cluster" }, "Cluster"), clusterInput),
      h("div", { class: "field" }, h("label", { for: "events-type" }, "Type"), typeSelect),
      h("div", { class: "field" }, h("label", { for: "events-actor" }, "Actor"), actorInput),
      appNames, clusterNames, actorNames),
    count,
    list,
  );

  // matchesServerFilters is what ListEvents would have returned of a
  // live event.
  function matchesServerFilters(e) {
    const app = appInput.value.trim();
    const cluster = clusterInput.value.trim();
    return (!app || e.app === app) && (!cluster || e.cluster === cluster);
  }

  async function load() {
    const n = ++loads;
    loading = [];
    try {
      const answer = await call("ListEvents", { app: appInput.value.trim(), cluster: clusterInput.value.trim(), limit: loadLimit });
      if (stopped || n !== loads) return;
      events = (answer.events ?? []).reverse();
      ids = new Set(events.map((e) => e.id));
      add(loading);
      loading = null;
      loadError = null;
    } catch (err) {
      if (stopped || n !== loads) return;
      loading = null;
      loadError = err;
    }
    render();
  }

  // add puts live events (oldest first) on top, those the page holds
  // already aside.
  function add(arrived) {
    for (const e of arrived) {
      if (!matchesServerFilters(e) || (e.id && ids.has(e.id))) continue;
      events.unshift(e);
      if (e.id) ids.add(e.id);
    }
    if (events.length > keepLimit) events.length = keepLimit;
  }

  function draw() {
    appNames.replaceChildren(...fleet.appNames().map((name) => h("option", { value: name })));
    clusterNames.replaceChildren(...fleet.clusterNames().map((name) => h("option", { value: name })));
    actorNames.replaceChildren(...[...new Set(events.map((e) => e.actor).filter(Boolean))].sort().map((name) => h("option", { value: name })));
    if (loadError) {
      setText(count, "");
      list.replaceChildren(h("p", { class: "problem", role: "alert" }, `Could not list the events: ${loadError.message}`));
      return;
    }
    if (loading && !events.length) {
      list.replaceChildren(h("p", {}, "Loading the events…"));
      return;
    }
    const type = typeSelect.value || "all";
    const actor = actorInput.value.trim().toLowerCase();
    const shown = events.filter((e) => (type === "all" || enumWord(e.type, "EVENT_TYPE_") === type) &&
      (!actor || (e.actor ?? "").toLowerCase().includes(actor)));
    setText(count, `${formatCount(shown.length)} of the newest ${formatCount(events.length)} events`);
    const body = document.createDocumentFragment();
    for (const e of shown) body.append(eventRow(e));
    replaceKeepingFocus(list, [h("table", { id: "events" },
      h("caption", {}, "Events, newest first"),
      h("thead", {}, h("tr", {}, ["TIME", "CLUSTER", "APP", "TYPE", "REASON", "ACTOR", "MESSAGE"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, body))]);
  }

  const render = onNextFrame(draw);
  const unsubscribe = fleet.subscribe((change) => {
    if (change.reconnected) load();
    if (!change.events.length) return;
    if (loading) loading.push(...change.events);
    else add(change.events);
    render();
  });
  draw();
  load();
  return { stop: () => { stopped = true; unsubscribe(); render.cancel(); serverFilterChanged.cancel(); } };
}

function eventRow(e) {
  const type = enumWord(e.type, "EVENT_TYPE_");
  return h("tr", { "data-event-id": e.id ?? null, class: type === "Warning" ? "warning" : null },
    h("th", { scope: "row" }, timeEl(e.time)),
    h("td", {}, e.cluster ?? ""),
    h("td", {}, e.app ?? ""),
    h("td", { class: "word" }, type),
    h("td", {}, e.reason ?? ""),
    h("td", {}, e.actor ?? ""),
    h("td", {}, oneLine(e.message)));
}
