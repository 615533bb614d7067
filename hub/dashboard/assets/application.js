// The application view (#/apps/<app>): the application in every cluster
// it targets (GetApp) and its history (GetAppHistory), reloaded when the
// stream reports a change to one of its cells, after a reconnect and after
// each action. Operators get the actions; everyone gets the diff. A fleet
// rollout that releases the application is named, with a link to it.

import { runAction, clusterLines, revertLines } from "./actions.js";
import { call } from "./api.js";
import { h, onNextFrame, replaceKeepingFocus, timeEl } from "./dom.js";
import { rolloutHref } from "./fleetrollouts.js";
import { rolloutArticle } from "./rollouts.js";
import { byName, fleet, rolloutKey } from "./store.js";
import { appHealth, appSync, enumWord, firstLine, fleetPhaseWord, initiatorWord, oneLine, revision } from "./words.js";

// reloadDelayMs gathers a burst of stream changes into one reload, and
// bounds how stale the page gets while they keep coming.
const reloadDelayMs = 300;

// The Rollout actions: the button, the request's action, what it does in
// words, and the outcome's verb.
const rolloutActions = [
  { label: "Promote", action: "ROLLOUT_ACTION_PROMOTE", does: "move to their next step", done: "promoted" },
  { label: "Promote fully", action: "ROLLOUT_ACTION_PROMOTE", full: true, does: "skip their remaining steps, pauses and analysis", done: "promoted fully" },
  { label: "Abort", action: "ROLLOUT_ACTION_ABORT", does: "go back to the stable version", done: "aborted" },
  { label: "Retry", action: "ROLLOUT_ACTION_RETRY", does: "start again after an abort", done: "retried" },
  { label: "Pause", action: "ROLLOUT_ACTION_PAUSE", does: "pause where they are", done: "paused" },
];

// applicationView renders app into view and returns {stop}.
export function applicationView(view, { app }, session) {
  const operator = session.role === "operator" || session.role === "admin";
  let apps = null; // GetApp's AppInfo list, once loaded
  let history = [];
  let loadError = null;
  let loads = 0;
  let stopped = false;
  let reloadTimer = 0;
  // diffs are the diff parts of each cluster, kept across re-renders so
  // that their live status region announces what the agent answered.
  const diffs = new Map();

  async function load() {
    const n = ++loads;
    try {
      const [got, listed] = await Promise.all([call("GetApp", { app }), call("GetAppHistory", { app })]);
      if (stopped || n !== loads) return;
      apps = (got.apps ?? []).sort((a, b) => byName(a.cluster ?? "", b.cluster ?? ""));
      history = listed.entries ?? [];
      loadError = null;
    } catch (err) {
      if (stopped || n !== loads) return;
      loadError = err;
    }
    draw();
  }

  function reloadSoon() {
    reloadTimer ||= setTimeout(() => { reloadTimer = 0; load(); }, reloadDelayMs);
  }

  // act runs an operator action, then reloads.
  async function act(options) {
    if (await runAction(options)) load();
  }

  function draw() {
    const parts = [h("h1", { tabindex: "-1", "data-key": "heading" }, app), ...fleetRolloutLines()];
    if (loadError) {
      const words = loadError.code === "not_found" ? `No application named “${app}”.` : `Could not load ${app}: ${loadError.message}`;
      parts.push(h("p", { class: "problem", role: "alert" }, apps ? `${words} Showing what was loaded before.` : words));
    }
    if (!apps) {
      if (!loadError) parts.push(h("p", {}, "Loading…"));
      replaceKeepingFocus(view, parts);
      return;
    }
    if (operator) parts.push(appActions());
    for (const a of apps.filter((a) => !a.cluster && a.refused)) {
      parts.push(h("p", { class: "problem" }, `The hub refuses ${app} as Git has it now, and never published it: ${a.refused}`));
    }
    const targeted = apps.filter((a) => a.cluster);
    if (!targeted.length) parts.push(h("p", {}, `${app} targets no cluster.`));
    targeted.forEach((a, i) => parts.push(clusterSection(a, i)));
    parts.push(h("h2", {}, "History"), historyTable());
    replaceKeepingFocus(view, parts);
  }

  // fleetRolloutLines name the fleet rollouts that release app, in a
  // line each.
  function fleetRolloutLines() {
    return fleet.rolloutsOf(app).map(({ rollout, waves }) => {
      const name = rollout.name ?? "";
      const message = oneLine(rollout.message);
      return h("p", { class: "fleet-rollout-note", "data-fleet-rollout-note": name },
        "Released by the fleet rollout of ", rollout.kind ?? "", " ",
        h("a", { href: rolloutHref(name), "data-key": `fleet-rollout:${rolloutKey(rollout)}` }, name),
        ` (${revision({ commit: rollout.revision })}): ${fleetPhaseWord(rollout)}${message ? `, ${message}` : ""}; ${app} is in ${waves.length === 1 ? "wave" : "waves"} ${waves.join(", ")}.`);
    });
  }

  function appActions() {
    return h("div", { class: "actions" },
      h("button", {
        type: "button", "data-action": "sync-all", "data-key": "action:sync-all",
        on: { click: (e) => act({
          opener: e.currentTarget, ok: "Sync", title: `Sync ${app}`,
          text: `Sync ${app} in every cluster it targets: fetch Git now and have each agent re-apply it?`,
          call: () => call("SyncApp", { app }),
          outcome: (r) => clusterLines(r.clusters, (c) => `syncing, at history ${c.historyId}`),
        }) },
      }, "Sync all clusters"),
      h("button", {
        type: "button", "data-action": "revert", "data-key": "action:revert",
        on: { click: (e) => act({
          opener: e.currentTarget, ok: "Roll back through Git", title: `Roll back ${app} through Git`,
          text: `Roll back ${app} through Git: push a revert of the last commit that changed it, for the fleet to follow?`,
          call: () => call("RevertApp", { app }),
          outcome: revertLines,
        }) },
      }, "Roll back through Git"));
  }

  function clusterSection(a, index) {
    const cluster = a.cluster;
    const headingId = `cluster-${index}`;
    const desired = a.desired ?? {};
    const status = a.status;
    const source = desired.source ?? {};
    const pin = desired.pin;
    const rollouts = status?.rollouts ?? [];
    const facts = [
      fact("Sync", appSync(a)),
      fact("Health", appHealth(a)),
      status ? fact("Phase", enumWord(status.phase, "SYNC_PHASE_")) : null,
      fact("History", String(desired.historyId ?? "none"),
        status && String(status.historyId ?? "0") !== String(desired.historyId ?? "0") ? ` (the agent last reported ${status.historyId ?? 0})` : null),
      fact("Revision", revision(source) || "none"),
      source.commitMessage || source.commitAuthor
        ? fact("Commit", firstLine(source.commitMessage), source.commitAuthor ? ` — ${source.commitAuthor}` : null) : null,
      a.offlineSince ? fact("Offline", "offline since ", timeEl(a.offlineSince), status?.observedAt ? ["; as last reported ", timeEl(status.observedAt)] : null) : null,
      pin ? fact("Pinned", `pinned to ${pin.rolledBackTo ?? 0} by ${pin.by ?? "the hub"} at `, timeEl(pin.at),
        pin.reason ? ` (${pin.reason})` : null, operator ? [" ", unpinButton(cluster)] : null) : null,
      a.refused ? fact("Refused", a.refused) : null,
      status?.message ? fact("Message", status.message) : null,
    ];
    const buttons = [];
    if (operator) {
      buttons.push(h("button", {
        type: "button", "data-action": "sync", "data-cluster": cluster, "data-key": `action:sync:${cluster}`, "aria-label": `Sync ${cluster}`,
        on: { click: (e) => act({
          opener: e.currentTarget, ok: "Sync", title: `Sync ${app} in ${cluster}`,
          text: `Sync ${app} in ${cluster} now?`,
          call: () => call("SyncApp", { app, cluster }),
          outcome: (r) => clusterLines(r.clusters, (c) => `syncing, at history ${c.historyId}`),
        }) },
      }, "Sync"));
      if (rollouts.length) for (const ra of rolloutActions) buttons.push(rolloutButton(cluster, ra));
    }
    buttons.push(diffPart(cluster).button);
    return h("section", { "data-cluster": cluster, "aria-labelledby": headingId },
      h("h2", { id: headingId }, cluster),
      h("dl", { class: "facts" }, facts),
      h("div", { class: "actions" }, buttons),
      diffPart(cluster).box,
      resourceTable(a),
      rollouts.map(rolloutArticle));
  }

  function unpinButton(cluster) {
    return h("button", {
      type: "button", "data-action": "unpin", "data-cluster": cluster, "data-key": `action:unpin:${cluster}`, "aria-label": `Unpin ${cluster}`,
      on: { click: (e) => act({
        opener: e.currentTarget, ok: "Unpin", title: `Unpin ${app} in ${cluster}`,
        text: `Unpin ${app} in ${cluster}, so that it follows Git again?`,
        call: () => call("UnpinApp", { app, cluster }),
        outcome: (r) => clusterLines(r.clusters, (c) => `unpinned, publishing history ${c.historyId} from Git`),
      }) },
    }, "Unpin");
  }

  function rolloutButton(cluster, ra) {
    const key = ra.full ? "promote-full" : ra.label.toLowerCase();
    return h("button", {
      type: "button", "data-action": key, "data-cluster": cluster, "data-key": `action:${key}:${cluster}`,
      "aria-label": `${ra.label} the Rollouts in ${cluster}`,
      on: { click: (e) => act({
        opener: e.currentTarget, ok: ra.label, title: `${ra.label} the Rollouts of ${app} in ${cluster}`,
        text: `${ra.label} the Rollouts of ${app} in ${cluster}: ${ra.does}?`,
        call: () => call("RolloutApp", { app, cluster, action: ra.action, ...(ra.full ? { full: true } : {}) }),
        outcome: (r) => clusterLines(r.clusters, (c) => `${ra.done} ${c.objects?.length ? c.objects.join(", ") : "no Rollout"}`),
      }) },
    }, ra.label);
  }

  // diffPart is cluster's "Show diff" button and the box with the
  // agent's answer, made once per cluster.
  function diffPart(cluster) {
    let part = diffs.get(cluster);
    if (part) return part;
    const status = h("p", { class: "diff-status", role: "status" });
    const output = h("div", { class: "diff-output" });
    const button = h("button", {
      type: "button", "data-action": "diff", "data-cluster": cluster, "data-key": `action:diff:${cluster}`, "aria-label": `Show diff of ${cluster}`,
      on: { click: () => showDiff(cluster, part) },
    }, "Show diff");
    part = { button, box: h("div", { class: "diff" }, status, output), status, output };
    diffs.set(cluster, part);
    return part;
  }

  // showDiff asks the agent; while it does, the button says it is busy
  // rather than being disabled, which would drop a keyboard user's focus.
  async function showDiff(cluster, part) {
    if (part.button.getAttribute("aria-disabled") === "true") return;
    part.button.setAttribute("aria-disabled", "true");
    part.output.replaceChildren();
    part.status.textContent = "Asking the agent…";
    try {
      const answer = await call("DiffApp", { app, cluster });
      const d = (answer.clusters ?? []).find((c) => c.cluster === cluster) ?? answer.clusters?.[0];
      if (!d) part.status.textContent = `${cluster} gave no answer.`;
      else if (d.error) part.status.textContent = `No diff from ${cluster}: ${d.error}`;
      else if (!d.diffs?.length) part.status.textContent = `In sync with history ${d.historyId ?? 0}: no object differs.`;
      else {
        part.status.textContent = `${d.diffs.length} ${d.diffs.length === 1 ? "object differs" : "objects differ"} from history ${d.historyId ?? 0} (live --- against desired +++, secret values masked):`;
        part.output.replaceChildren(...d.diffs.map(objectDiff));
      }
    } catch (err) {
      part.status.textContent = `No diff from ${cluster}: ${err.message}`;
    } finally {
      part.button.removeAttribute("aria-disabled");
    }
  }

  function historyTable() {
    const columns = ["CLUSTER", "ID", "DEPLOYED", "INITIATOR", "REVISION", "RESULT", "MESSAGE"];
    if (operator) columns.push("ACTION");
    return h("table", { id: "history" },
      h("caption", {}, `History of ${app}, newest first per cluster; * marks the current entry`),
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, history.map(historyRow)));
  }

  function historyRow(e) {
    const id = String(e.historyId ?? "0");
    const subject = firstLine(e.source?.commitMessage);
    const row = h("tr", { "data-cluster": e.cluster ?? "", "data-history-id": id, class: e.current ? "current" : null },
      h("th", { scope: "row" }, e.cluster ?? ""),
      h("td", {}, e.current ? `${id}*` : id),
      h("td", {}, timeEl(e.publishedAt)),
      h("td", {}, initiatorWord(e)),
      h("td", {}, revision(e.source)),
      h("td", {}, oneLine(e.result)),
      h("td", {}, subject));
    if (!operator) return row;
    let cell = null;
    if (!e.current && !e.deleted && !e.artifactAvailable) cell = "artifact gone";
    else if (!e.current && !e.deleted) {
      const cluster = e.cluster;
      cell = h("button", {
        type: "button", "data-action": "rollback", "data-cluster": cluster, "data-history-id": id,
        "data-key": `action:rollback:${cluster}:${id}`, "aria-label": `Roll back ${cluster} to history ${id}`,
        on: { click: (ev) => act({
          opener: ev.currentTarget, ok: "Roll back", title: `Roll back ${app} in ${cluster} to history ${id}`,
          text: `Roll back ${app} in ${cluster} to history ${id} (${subject || revision(e.source) || "no commit message"})?`,
          call: () => call("RollbackApp", { app, historyId: id, cluster }),
          outcome: (r) => clusterLines(r.clusters, (c) => `published history ${c.historyId}, pinned to ${id}`),
        }) },
      }, "Roll back");
    }
    row.append(h("td", {}, cell));
    return row;
  }

  const redraw = onNextFrame(draw);
  const unsubscribe = fleet.subscribe((change) => {
    if (change.reconnected || change.apps.some((cell) => cell.app === app)) reloadSoon();
    else if (change.rollouts.length) redraw();
  });
  draw();
  load();
  return { stop: () => { stopped = true; unsubscribe(); clearTimeout(reloadTimer); redraw.cancel(); } };
}

function fact(term, ...details) {
  return h("div", {}, h("dt", {}, term), h("dd", {}, details));
}

// resourceTable is one cluster's objects, in the CLI's columns.
function resourceTable(a) {
  const resources = a.status?.resources ?? [];
  if (!resources.length) return h("p", {}, a.status ? "The agent reported no objects." : "The agent has not reported yet.");
  const caption = a.offlineSince ? `Objects of ${a.app} in ${a.cluster}, as last reported before it went offline` : `Objects of ${a.app} in ${a.cluster}`;
  return h("table", { class: "resources" },
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, ["KIND", "NAMESPACE", "NAME", "SYNC", "HEALTH", "LAST SYNC", "MESSAGE"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, resources.map((r) => {
      const sync = enumWord(r.syncStatus, "SYNC_STATUS_");
      const health = enumWord(r.health, "HEALTH_STATUS_");
      return h("tr", {},
        h("td", {}, r.group ? `${r.kind ?? ""}.${r.group}` : r.kind ?? ""),
        h("td", {}, r.namespace ?? ""),
        h("th", { scope: "row" }, r.name ?? ""),
        h("td", { class: `word sync-${sync.toLowerCase()}` }, sync),
        h("td", { class: `word health-${health.toLowerCase()}` }, health),
        h("td", {}, r.action ?? ""),
        h("td", {}, oneLine(r.message)));
    })));
}

// objectDiff is one object's unified diff, its lines marked for colour
// (the + and - say the same).
function objectDiff(d) {
  const kind = d.group ? `${d.kind}.${d.group}` : d.kind ?? "";
  const name = d.namespace ? `${kind}/${d.namespace}/${d.name}` : `${kind}/${d.name}`;
  const lines = (d.diff ?? "").replace(/\n$/, "").split("\n").map((line) => {
    const kindOfLine = line.startsWith("+++") || line.startsWith("---") ? "file"
      : line.startsWith("+") ? "added" : line.startsWith("-") ? "removed" : line.startsWith("@@") ? "hunk" : null;
    return h("span", { class: kindOfLine }, line + "\n");
  });
  return h("div", { class: "object-diff" },
    h("h3", {}, `${d.action ?? "update"} ${name}`),
    h("pre", { tabindex: "0" }, lines));
}
