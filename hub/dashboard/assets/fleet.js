// The fleet view (#/): every cluster × application cell with its sync,
// health and history, filtered by cluster labels, application name and
// state, 50 clusters a page. Stream changes re-render only the page, at
// most once a frame.

import { h, onNextFrame, replaceKeepingFocus, setText } from "./dom.js";
import { selectorField } from "./selector.js";
import { fleet } from "./store.js";
import { formatCount } from "./words.js";

const pageSize = 50;

// filters outlive the view, so that going to an application and back
// keeps them.
const filters = { selector: "", app: "", state: "all", page: 0 };

// The State filter's choices, and which cells are in each state.
const states = [
  { value: "all", label: "All" },
  { value: "outofsync", label: "Out of sync", has: (cell) => cell.sync === "OutOfSync" },
  { value: "degraded", label: "Degraded", has: (cell) => cell.health === "Degraded" },
  { value: "progressing", label: "Progressing", has: (cell) => cell.health === "Progressing" },
  { value: "offline", label: "Offline", has: (cell) => Boolean(cell.offlineSince) },
  { value: "pinned", label: "Pinned", has: (cell) => Boolean(cell.pin) },
  { value: "rollout", label: "Rollout in progress", has: (cell) => Boolean(cell.rolloutInProgress) },
  { value: "refused", label: "Refused", has: (cell) => cell.sync === "Refused" || Boolean(cell.refused) },
];

// fleetView renders into view and returns {stop}.
export function fleetView(view) {
  const summary = h("p", { class: "summary", id: "fleet-summary" });
  const selector = selectorField(filters.selector, "A label selector, e.g. env=production,tier in (web,api)", (text) => {
    filters.selector = text;
    filters.page = 0;
    render();
  });
  const appInput = h("input", {
    id: "filter-app", name: "app", type: "search", value: filters.app, autocomplete: "off",
    on: { input: () => { filters.app = appInput.value; filters.page = 0; render(); } },
  });
  const stateSelect = h("select", {
    id: "filter-state", name: "state",
    on: { change: () => { filters.state = stateSelect.value; filters.page = 0; render(); } },
  }, states.map((s) => h("option", { value: s.value }, s.label)));
  stateSelect.value = filters.state;
  const pageInfo = h("p", { id: "page-info", role: "status" });
  const prev = h("button", { id: "page-prev", type: "button", on: { click: () => turnPage(-1) } }, "Previous");
  const next = h("button", { id: "page-next", type: "button", on: { click: () => turnPage(1) } }, "Next");
  const notices = h("div");
  const matrix = h("div", { class: "matrix" });

  view.replaceChildren(
    h("h1", { tabindex: "-1" }, "Fleet"),
    summary,
    h("form", { class: "filters", role: "search", "aria-label": "Filter the fleet", on: { submit: (e) => e.preventDefault() } },
      selector.element,
      h("div", { class: "field" }, h("label", { for: "filter-app" }, "Application"), appInput),
      h("div", { class: "field" }, h("label", { for: "filter-state" }, "State"), stateSelect)),
    notices,
    h("div", { class: "pager" }, prev, pageInfo, next),
    matrix,
  );

  function turnPage(by) {
    filters.page += by;
    draw();
    // A button disabled under the focus would drop it to the page's top.
    if (document.activeElement === document.body || document.activeElement?.disabled) (prev.disabled ? next : prev).focus();
  }

  function draw() {
    setText(summary, summaryText());
    if (!fleet.ready) {
      setText(pageInfo, "");
      prev.disabled = next.disabled = true;
      matrix.replaceChildren(h("p", {}, "Waiting for the fleet from the hub…"));
      return;
    }
    const appFilter = filters.app.trim().toLowerCase();
    const apps = fleet.appNames().filter((app) => app.toLowerCase().includes(appFilter));
    const state = states.find((s) => s.value === filters.state) ?? states[0];
    const rows = fleet.clusterNames().filter((cluster) =>
      selector.matches(fleet.clusters.get(cluster)?.registration?.labels) && rowInState(cluster, apps, state));
    const pages = Math.max(1, Math.ceil(rows.length / pageSize));
    filters.page = Math.min(Math.max(filters.page, 0), pages - 1);
    const first = filters.page * pageSize;
    const shown = rows.slice(first, first + pageSize);

    setText(pageInfo, rows.length
      ? `Clusters ${formatCount(first + 1)}–${formatCount(first + shown.length)} of ${formatCount(rows.length)}`
      : "No cluster matches the filters");
    prev.disabled = filters.page === 0;
    next.disabled = filters.page >= pages - 1;

    const notes = [];
    if (fleet.unpublished.size) {
      notes.push(h("p", {}, "The hub refuses these applications as Git has them now, and never published them:"),
        h("ul", { class: "unpublished" }, [...fleet.unpublished.values()].map((cell) =>
          h("li", {}, h("a", { href: appHref(cell.app), "data-key": `unpublished:${cell.app}` }, cell.app), `: ${cell.refused || "refused"}`))));
    }
    if (!apps.length && fleet.appNames().length) notes.push(h("p", {}, `No application name contains “${filters.app.trim()}”.`));
    replaceKeepingFocus(notices, notes);
    replaceKeepingFocus(matrix, [matrixTable(shown, apps)]);
  }

  const render = onNextFrame(draw);
  const unsubscribe = fleet.subscribe(render);
  draw();
  return { stop: () => { unsubscribe(); render.cancel(); } };
}

// clusterOffline reports whether cluster's agent is offline: by the
// hub's ClusterInfo, else by its cells.
function clusterOffline(cluster) {
  const info = fleet.clusters.get(cluster);
  if (info) return !info.connected && !info.revokedAt && Boolean(info.lastHeartbeat);
  for (const cell of fleet.cells.get(cluster)?.values() ?? []) if (cell.offlineSince) return true;
  return false;
}

// clusterWord is a row header's second line.
function clusterWord(cluster) {
  const info = fleet.clusters.get(cluster);
  if (!info) return clusterOffline(cluster) ? "offline" : "not registered";
  if (info.revokedAt) return "revoked";
  if (info.connected) return "connected";
  return info.lastHeartbeat ? "offline" : "never connected";
}

// rowInState reports whether one of cluster's cells among apps is in
// state (an offline cluster is offline with no cells too).
function rowInState(cluster, apps, state) {
  if (!state.has) return true;
  if (state.value === "offline" && clusterOffline(cluster)) return true;
  const cells = fleet.cells.get(cluster);
  if (!cells) return false;
  for (const app of apps) {
    const cell = cells.get(app);
    if (cell && state.has(cell)) return true;
  }
  return false;
}

function summaryText() {
  if (!fleet.ready) return "";
  let cells = 0, outOfSync = 0, degraded = 0, pinned = 0, rollouts = 0, refused = fleet.unpublished.size;
  for (const apps of fleet.cells.values()) {
    for (const cell of apps.values()) {
      cells++;
      if (cell.sync === "OutOfSync") outOfSync++;
      if (cell.health === "Degraded") degraded++;
      if (cell.pin) pinned++;
      if (cell.rolloutInProgress) rollouts++;
      if (cell.sync === "Refused" || cell.refused) refused++;
    }
  }
  const clusters = fleet.clusterNames();
  const offline = clusters.filter(clusterOffline).length;
  const parts = [
    `${formatCount(clusters.length)} clusters`, `${formatCount(cells)} apps`, `${formatCount(outOfSync)} out of sync`,
    `${formatCount(degraded)} degraded`, `${formatCount(offline)} offline`,
  ];
  if (pinned) parts.push(`${formatCount(pinned)} pinned`);
  if (rollouts) parts.push(`${formatCount(rollouts)} rollouts in progress`);
  if (refused) parts.push(`${formatCount(refused)} refused`);
  return parts.join(" · ");
}

function matrixTable(clusters, apps) {
  const head = h("tr", {}, h("th", { scope: "col" }, "Cluster"),
    apps.map((app) => h("th", { scope: "col" }, h("a", { href: appHref(app), "data-key": `app:${app}` }, app))));
  const body = document.createDocumentFragment();
  for (const cluster of clusters) {
    const offline = clusterOffline(cluster);
    const cells = fleet.cells.get(cluster);
    const row = h("tr", { "data-cluster": cluster },
      h("th", { scope: "row", class: offline ? "offline" : null },
        h("a", { href: "#/clusters", "data-key": `cluster:${cluster}` }, cluster), " ",
        h("span", { class: "cluster-state" }, clusterWord(cluster))));
    for (const app of apps) row.append(cellElement(cluster, app, cells?.get(app), offline));
    body.append(row);
  }
  return h("table", { id: "fleet-matrix" },
    h("caption", {}, "Sync · health · history id of each application (columns) in each cluster (rows)"),
    h("thead", {}, head), h("tbody", {}, body));
}

function appHref(app) {
  return `#/apps/${encodeURIComponent(app)}`;
}

// cellElement is one (cluster, app) cell: its words always, its colour by
// tone, and the last known words while the cluster is offline.
function cellElement(cluster, app, cell, clusterIsOffline) {
  if (!cell) return h("td", { class: "cell absent", "data-cluster": cluster, "data-app": app }, "—");
  const offline = Boolean(cell.offlineSince) || clusterIsOffline;
  const sync = cell.sync || "Unknown";
  const health = cell.health || "Unknown";
  const words = [sync, health];
  if (cell.historyId) words.push(`#${cell.historyId}`);
  const notes = [];
  if (cell.pin) notes.push(`pinned to ${cell.pin.rolledBackTo ?? "0"}`);
  if (cell.rolloutInProgress && cell.rollout) notes.push(cell.rollout);
  if (cell.refused) notes.push("refused");
  if (offline) notes.push("offline, last reported");
  return h("td", {
    class: `cell ${offline ? "offline" : tone(sync, health)}${cell.pin ? " pinned" : ""}`,
    "data-cluster": cluster, "data-app": app, "data-sync": sync, "data-health": health,
  }, h("a", { href: appHref(app), "data-key": `cell:${cluster}/${app}`, title: cell.refused || cell.message || null },
    h("span", { class: "words" }, words.join(" · ")),
    notes.map((note) => [" ", h("span", { class: "note" }, note)])));
}

// tone is a cell's colour class; the words say the same.
function tone(sync, health) {
  if (sync === "Refused" || health === "Degraded" || health === "Missing") return "bad";
  if (sync === "Synced" && health === "Healthy") return "good";
  return "warn";
}
