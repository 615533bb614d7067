// The clusters view (#/clusters): every cluster with its labels, agent
// and Kubernetes versions and whether its agent is connected, as `flotilla
// cluster list -o wide` has them. Live from the store; from ListClusters
// until the stream's first snapshot.

import { call } from "./api.js";
import { h, onNextFrame, replaceKeepingFocus, setText, timeEl } from "./dom.js";
import { selectorField } from "./selector.js";
import { byName, fleet } from "./store.js";
import { clusterState, formatCount, labelString } from "./words.js";

// clustersView renders into view and returns {stop}.
export function clustersView(view) {
  let listed = null; // ListClusters' answer, used until the store is ready
  const selector = selectorField("", "A label selector, e.g. env=production,region in (eu,us)", () => render());
  const count = h("p", { class: "summary", role: "status" });
  const list = h("div");
  view.replaceChildren(
    h("h1", { tabindex: "-1" }, "Clusters"),
    h("form", { class: "filters", role: "search", "aria-label": "Filter the clusters", on: { submit: (e) => e.preventDefault() } },
      selector.element),
    count,
    list,
  );

  function draw() {
    const all = fleet.ready ? [...fleet.clusters.values()] : listed;
    if (!all) {
      list.replaceChildren(h("p", {}, "Loading the clusters…"));
      return;
    }
    const shown = all.filter((c) => selector.matches(c.registration?.labels))
      .sort((a, b) => byName(a.registration?.name ?? "", b.registration?.name ?? ""));
    setText(count, `${formatCount(shown.length)} of ${formatCount(all.length)} clusters`);
    const body = document.createDocumentFragment();
    for (const c of shown) body.append(clusterRow(c));
    replaceKeepingFocus(list, [h("table", { id: "clusters" },
      h("caption", {}, "Clusters, their agents and liveness"),
      h("thead", {}, h("tr", {}, ["NAME", "LABELS", "AGENT", "KUBERNETES", "STATE", "LAST HEARTBEAT"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, body))]);
  }

  const render = onNextFrame(draw);
  const unsubscribe = fleet.subscribe(render);
  if (!fleet.ready) {
    call("ListClusters", {}).then((answer) => { listed = answer.clusters ?? []; render(); },
      (err) => { if (!fleet.ready) list.replaceChildren(h("p", { role: "alert" }, `Could not list the clusters: ${err.message}`)); });
  }
  draw();
  return { stop: () => { unsubscribe(); render.cancel(); } };
}

function clusterRow(c) {
  const r = c.registration ?? {};
  const state = clusterState(c);
  return h("tr", { "data-cluster": r.name ?? "" },
    h("th", { scope: "row" }, r.name ?? ""),
    h("td", {}, labelString(r.labels)),
    h("td", {}, r.agentVersion ?? ""),
    h("td", {}, r.kubernetesVersion ?? ""),
    h("td", { class: `state ${state.kind}` }, state.word, state.at ? [" ", timeEl(state.at)] : null),
    h("td", {}, timeEl(c.lastHeartbeat)));
}
