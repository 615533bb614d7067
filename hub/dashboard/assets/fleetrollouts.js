// The fleet rollouts: a change of an ApplicationSet or Application going
// out wave by wave of clusters, in the words of `flotilla fleet status`.
// #/rollouts lists them; #/rollouts/<name> shows one: its waves with
// their state and gate (bake time, analysis, approval), each wave's
// clusters with the CLI's columns, the current wave marked, and for
// operators Promote and Abort. Live from the store; waves are counted
// from 0, as the CLI and the hub's messages count them.

import { runAction } from "./actions.js";
import { call } from "./api.js";
import { h, onNextFrame, replaceKeepingFocus, setText, timeEl } from "./dom.js";
import { byName, fleet, rolloutKey } from "./store.js";
import { fleetAnalysisWords, fleetPhaseWord, formatCount, gateWords, goDuration, oneLine, revision, wavePhaseWord } from "./words.js";

// rolloutHref is the page of the fleet rollout of the ApplicationSet or
// Application name.
export function rolloutHref(name) {
  return `#/rollouts/${encodeURIComponent(name)}`;
}

// Phases in the order the list shows them: those that may want an
// operator first.
const phaseOrder = ["Paused", "Failed", "Progressing", "Aborted", "Succeeded"];

// fleetRolloutsView renders the list into view and returns {stop}.
export function fleetRolloutsView(view) {
  const summary = h("p", { class: "summary", id: "fleet-rollouts-summary", role: "status" });
  const list = h("div");
  view.replaceChildren(
    h("h1", { tabindex: "-1" }, "Fleet rollouts"),
    h("p", {}, "A change of an ApplicationSet or Application with waves reaches its clusters wave by wave: the next wave gets it once every cluster of the current one is Synced and Healthy at the new revision and the wave's gate passed."),
    summary,
    list,
  );

  function draw() {
    if (!fleet.ready) {
      setText(summary, "");
      list.replaceChildren(h("p", {}, "Waiting for the fleet from the hub…"));
      return;
    }
    const rollouts = [...fleet.rollouts.values()].sort(listOrder);
    const byPhase = new Map();
    for (const r of rollouts) byPhase.set(fleetPhaseWord(r), (byPhase.get(fleetPhaseWord(r)) ?? 0) + 1);
    setText(summary, [`${formatCount(rollouts.length)} fleet ${rollouts.length === 1 ? "rollout" : "rollouts"}`,
      ...[...byPhase].map(([phase, n]) => `${formatCount(n)} ${phase.toLowerCase()}`)].join(" · "));
    if (!rollouts.length) {
      replaceKeepingFocus(list, [h("p", {}, "No ApplicationSet or Application with waves has changed since the hub started keeping rollouts.")]);
      return;
    }
    replaceKeepingFocus(list, [h("table", { id: "fleet-rollouts" },
      h("caption", {}, "Fleet rollouts, those that may want an operator first; WAVE is the current wave, counted from 0"),
      h("thead", {}, h("tr", {}, ["NAME", "KIND", "REVISION", "PHASE", "WAVE", "MESSAGE", "STARTED", "FINISHED"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rollouts.map(listRow)))]);
  }

  const render = onNextFrame(draw);
  const unsubscribe = fleet.subscribe((change) => {
    if (change.snapshot || change.rollouts.length) render();
  });
  draw();
  return { stop: () => { unsubscribe(); render.cancel(); } };
}

function listOrder(a, b) {
  const rank = (r) => {
    const i = phaseOrder.indexOf(fleetPhaseWord(r));
    return i < 0 ? phaseOrder.length : i;
  };
  return rank(a) - rank(b) || byName(a.name ?? "", b.name ?? "") || byName(a.kind ?? "", b.kind ?? "");
}

function listRow(r) {
  const phase = fleetPhaseWord(r);
  return h("tr", { "data-fleet-rollout": r.name ?? "", "data-kind": r.kind ?? "", "data-phase": phase },
    h("th", { scope: "row" }, h("a", { href: rolloutHref(r.name ?? ""), "data-key": `fleet-rollout:${rolloutKey(r)}` }, r.name ?? "")),
    h("td", {}, r.kind ?? ""),
    h("td", {}, revision({ commit: r.revision })),
    h("td", { class: `word ${phaseClass(phase)}` }, phase),
    h("td", {}, currentWaveWords(r)),
    h("td", {}, oneLine(r.message)),
    h("td", {}, timeEl(r.startedAt)),
    h("td", {}, r.finishedAt ? timeEl(r.finishedAt) : "not yet"));
}

// currentWaveWords is "1 of waves 0–2".
function currentWaveWords(r) {
  const n = r.waves?.length ?? 0;
  return n ? `${r.current ?? 0} of waves 0–${n - 1}` : String(r.current ?? 0);
}

// phaseClass colours a rollout's or wave's phase; the word says the same.
function phaseClass(phase) {
  switch (phase) {
    case "Succeeded": return "phase-good";
    case "Failed": case "Aborted": return "phase-bad";
    case "Paused": case "Waiting": case "Gated": case "Progressing": return "phase-warn";
    default: return "phase-none";
  }
}

// fleetRolloutView renders the fleet rollout of name into view and
// returns {stop}. session is WhoAmI's answer: operators get the actions.
export function fleetRolloutView(view, { name }, session) {
  const operator = session.role === "operator" || session.role === "admin";

  function draw() {
    const r = fleet.ready ? fleet.rolloutNamed(name) : undefined;
    if (!r) {
      const words = fleet.ready ? `No fleet rollout of an ApplicationSet or Application named “${name}”.` : "Waiting for the fleet from the hub…";
      replaceKeepingFocus(view, [h("h1", { tabindex: "-1", "data-key": "heading" }, `Fleet rollout ${name}`),
        h("p", { class: fleet.ready ? "problem" : null }, words),
        h("p", {}, h("a", { href: "#/rollouts" }, "All fleet rollouts"))]);
      return;
    }
    replaceKeepingFocus(view, [rolloutSection(r, operator ? act : null)]);
  }

  async function act(options) {
    await runAction(options);
  }

  const render = onNextFrame(draw);
  const unsubscribe = fleet.subscribe((change) => {
    if (change.snapshot || change.rollouts.some((key) => key.slice(key.indexOf("/") + 1) === name)) render();
  });
  draw();
  return { stop: () => { unsubscribe(); render.cancel(); } };
}

// rolloutSection is one rollout: what it is, the operator's actions when
// act is set, and its waves.
function rolloutSection(r, act) {
  const name = r.name ?? "";
  const phase = fleetPhaseWord(r);
  const waves = r.waves ?? [];
  const facts = [
    fact("Rollout", r.id ?? ""),
    fact("Kind", r.kind ?? ""),
    fact("Revision", revision({ commit: r.revision }) || "none"),
    fact("Phase", h("span", { class: `word ${phaseClass(phase)}`, id: "fleet-rollout-phase" }, phase)),
    r.message ? fact("Message", oneLine(r.message)) : null,
    fact("Current wave", currentWaveWords(r)),
    fact("Auto rollback", r.autoRollback ? "yes: a failed wave rolls back the clusters the rollout updated" : "no"),
    r.rollback ? fact("Rollback", r.rolledBack ? "done" : "in progress") : null,
    fact("Started", timeEl(r.startedAt)),
    r.updatedAt ? fact("Updated", timeEl(r.updatedAt)) : null,
    r.finishedAt ? fact("Finished", timeEl(r.finishedAt)) : null,
  ];
  return h("section", { "data-fleet-rollout": name, "data-kind": r.kind ?? "", "data-phase": phase, "aria-labelledby": "fleet-rollout-title" },
    h("h1", { id: "fleet-rollout-title", tabindex: "-1", "data-key": "heading" }, `Fleet rollout ${name}`),
    h("p", {}, h("a", { href: "#/rollouts" }, "All fleet rollouts")),
    h("dl", { class: "facts" }, facts),
    act ? rolloutActions(r, act) : null,
    h("h2", {}, "Waves"),
    waves.length ? waves.map((w) => waveArticle(r, w)) : h("p", {}, "The rollout has no wave."));
}

function fact(term, ...details) {
  return h("div", {}, h("dt", {}, term), h("dd", {}, details));
}

// updatedTargets are the clusters the rollout gave the new revision that
// had a desired state before: what a rollback gives back.
function updatedTargets(r) {
  return (r.waves ?? []).flatMap((w) => w.targets ?? [])
    .filter((t) => Number(t.historyId ?? 0) > 0 && Number(t.previousHistoryId ?? 0) > 0 && !Number(t.rolledBackTo ?? 0));
}

// rolloutActions are the operator's buttons that r's phase allows, as the
// hub allows them: Promote and Abort while it is in progress or paused,
// Promote (skip the failed wave) and a rollback after a failure that was
// not rolled back.
function rolloutActions(r, act) {
  const name = r.name ?? "";
  const phase = fleetPhaseWord(r);
  const active = phase === "Progressing" || phase === "Paused";
  const failedOpen = phase === "Failed" && !r.rollback;
  if (!active && !failedOpen) return h("p", { class: "actions-note" }, `Nothing to act on: the rollout is ${phase}.`);
  const current = r.current ?? 0;
  const waves = r.waves ?? [];
  const wave = waves[current] ?? {};
  const rev = revision({ commit: r.revision });
  const outcome = (answer) => {
    const got = answer.rollout ?? {};
    return [`${got.id ?? name}: ${fleetPhaseWord(got)}${got.message ? ` — ${oneLine(got.message)}` : ""}`];
  };
  let promoteText;
  if (failedOpen) {
    promoteText = `Skip the failed wave ${current} of ${name} and resume the rollout of ${rev} with the wave after it?`;
  } else if (wavePhaseWord(wave) === "Waiting") {
    promoteText = `Release wave ${current} of ${name} (${wave.selector || "its clusters"}): publish ${rev} to its ${formatCount(wave.targets?.length ?? 0)} clusters now?`;
  } else {
    const next = current + 1 < waves.length ? `release wave ${current + 1}` : "end the rollout as succeeded";
    promoteText = `Promote wave ${current} of ${name}: pass its gate (${gateWords(wave.gate)}) now, even with bake time or analysis still running, and ${next}?`;
  }
  const updated = updatedTargets(r).length;
  const buttons = [h("button", {
    type: "button", "data-action": "fleet-promote", "data-wave": current, "data-key": "action:fleet-promote",
    "aria-label": `Promote wave ${current} of ${name}`,
    on: { click: (e) => act({
      opener: e.currentTarget, ok: "Promote", title: `Promote wave ${current} of ${name}`, text: promoteText,
      call: () => call("PromoteFleetRollout", { name, wave: current }),
      outcome,
    }) },
  }, "Promote")];
  if (active) {
    buttons.push(h("button", {
      type: "button", "data-action": "fleet-abort", "data-key": "action:fleet-abort", "aria-label": `Abort the fleet rollout of ${name}`,
      on: { click: (e) => act({
        opener: e.currentTarget, ok: "Abort", title: `Abort the fleet rollout of ${name}`,
        text: `Abort the fleet rollout of ${name} at wave ${current}? Later waves never get ${rev}; the clusters it updated keep it.`,
        call: () => call("AbortFleetRollout", { name }),
        outcome,
      }) },
    }, "Abort"));
  }
  const rollbackWords = updated
    ? `give the ${formatCount(updated)} ${updated === 1 ? "cluster" : "clusters"} it updated their previous desired state back, pinned as a rollback is`
    : "no cluster it updated had a desired state before, so none is rolled back";
  buttons.push(h("button", {
    type: "button", "data-action": "fleet-abort-rollback", "data-key": "action:fleet-abort-rollback",
    "aria-label": `Abort and roll back the fleet rollout of ${name}`,
    on: { click: (e) => act({
      opener: e.currentTarget, ok: "Abort and roll back", title: `Abort and roll back the fleet rollout of ${name}`,
      text: active ? `Abort the fleet rollout of ${name} at wave ${current} and roll back: ${rollbackWords}?`
        : `Roll back the failed fleet rollout of ${name}: ${rollbackWords}?`,
      call: () => call("AbortFleetRollout", { name, rollback: true }),
      outcome,
    }) },
  }, "Abort and roll back"));
  return h("div", { class: "actions" }, buttons);
}

// waveArticle is one wave: its state, its gate and its clusters; the
// current one is marked in words and with aria-current.
function waveArticle(r, w) {
  const index = w.index ?? 0;
  const current = index === (r.current ?? 0);
  const phase = wavePhaseWord(w);
  const targets = w.targets ?? [];
  const healthy = targets.filter((t) => t.healthy).length;
  const headingId = `wave-${index}`;
  const waits = current ? waitsWords(r, w) : "";
  const gate = w.gate ?? {};
  const facts = [
    fact("Selector", w.selector || "every cluster"),
    fact("Phase", h("span", { class: `word ${phaseClass(phase)}` }, phase)),
    fact("Healthy", `${healthy}/${targets.length}`),
    fact("Gate", gateWords(gate)),
    Number(gate.bakeSeconds ?? 0) > 0 ? fact("Bake time", bakeWords(w)) : null,
    gate.analysis ? fact("Analysis", analysisGateWords(w)) : null,
    gate.approval ? fact("Approval", approvalWords(r, w, current)) : null,
    maxUpdateWords(w) ? fact("Max update", maxUpdateWords(w)) : null,
    w.message ? fact("Message", oneLine(w.message)) : null,
    w.startedAt ? fact("Started", timeEl(w.startedAt)) : null,
    w.finishedAt ? fact("Finished", timeEl(w.finishedAt)) : null,
  ];
  return h("article", {
    class: current ? "wave current" : "wave", "data-wave": index, "data-phase": phase,
    "aria-current": current ? "step" : null, "aria-labelledby": headingId,
  },
  h("h3", { id: headingId }, `Wave ${index}`,
    current ? [" ", h("span", { class: "mark" }, "current")] : null,
    waits ? [" ", h("span", { class: "mark waits" }, waits)] : null),
  h("dl", { class: "facts" }, facts),
  targets.length ? targetTable(index, targets) : h("p", {}, "Nothing in this wave changed: it has no cluster to release."));
}

// waitsWords says what a paused rollout's current wave waits for.
function waitsWords(r, w) {
  if (fleetPhaseWord(r) !== "Paused") return "";
  return wavePhaseWord(w) === "Waiting" ? "Paused: waits for an operator to release it" : "Paused: waits for approval";
}

function bakeWords(w) {
  const seconds = Number(w.gate?.bakeSeconds ?? 0);
  const words = goDuration(seconds);
  if (!w.healthyAt) return `${words}, counted from when every cluster is Healthy`;
  const until = new Date(Date.parse(w.healthyAt) + seconds * 1000).toISOString();
  return [`${words}, every cluster Healthy since `, timeEl(w.healthyAt), " until ", timeEl(until)];
}

function analysisGateWords(w) {
  const gate = w.gate ?? {};
  const names = (gate.analysis?.templates ?? []).map((t) => t.templateName ?? "").join(", ");
  const targets = w.targets ?? [];
  const succeeded = targets.filter((t) => t.analysis?.analysis?.phase === "Successful").length;
  const failed = targets.filter((t) => ["Failed", "Error", "Inconclusive"].includes(t.analysis?.analysis?.phase)).length;
  return `${names} on each cluster, ${gate.minSuccessful || "all"} must pass: ${succeeded} of ${targets.length} successful` +
    (failed ? `, ${failed} failed` : "");
}

function approvalWords(r, w, current) {
  if (w.approvedBy) return `given by ${w.approvedBy}`;
  if (current && fleetPhaseWord(r) === "Paused" && wavePhaseWord(w) === "Gated") return "waits for an operator to promote the wave";
  return "asked once the bake time and analysis passed";
}

// maxUpdateWords says how the wave's clusters are released when not all
// at once.
function maxUpdateWords(w) {
  const n = w.targets?.length ?? 0;
  const max = w.maxUpdate ?? 0;
  if (w.startedBy) return `released by ${w.startedBy}`;
  if (max === 0) return n ? "0: released only when an operator promotes it" : "";
  if (max < n) return `${max} ${max === 1 ? "cluster" : "clusters"} at a time`;
  return "";
}

// targetTable is a wave's clusters in `flotilla fleet status -o wide`'s
// columns (its WAVE column is the article's heading).
function targetTable(index, targets) {
  return h("table", { class: "wave-targets" },
    h("caption", {}, `Clusters of wave ${index}`),
    h("thead", {}, h("tr", {}, ["CLUSTER", "APP", "HISTORY", "STATE", "ANALYSIS", "PREVIOUS", "RELEASED"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, targets.map((t) => h("tr", { "data-cluster": t.cluster ?? "", "data-app": t.app ?? "", "data-healthy": t.healthy ? "true" : "false" },
      h("th", { scope: "row" }, t.cluster ?? ""),
      h("td", {}, h("a", { href: `#/apps/${encodeURIComponent(t.app ?? "")}` }, t.app ?? "")),
      h("td", { class: "number" }, String(t.historyId ?? "0")),
      h("td", { class: t.healthy ? "word phase-good" : null }, oneLine(t.state)),
      h("td", {}, fleetAnalysisWords(t.analysis?.analysis)),
      h("td", { class: "number" }, String(t.previousHistoryId ?? "0")),
      h("td", {}, t.releasedAt ? timeEl(t.releasedAt) : "not yet")))));
}
