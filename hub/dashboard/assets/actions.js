// Operator actions: each asks for confirmation, calls the hub, and writes
// what it did in each cluster, or why it failed, to the #outcome live
// region.

import { confirmAction } from "./dialog.js";
import { h, timeEl } from "./dom.js";

// runAction asks to confirm text, with the OK button named ok; then runs
// call and writes the outcome: title, then the lines outcome(response)
// returns. It reports whether the call was made.
export async function runAction({ opener, text, ok, title, call, outcome }) {
  if (!(await confirmAction({ text, ok, opener }))) return false;
  showOutcome(`${title}: asking the hub…`, []);
  try {
    const lines = outcome(await call());
    showOutcome(`${title}:`, lines, lines.some((line) => line.failed));
  } catch (err) {
    showOutcome(`${title} failed: ${err.message}`, [], true);
  }
  return true;
}

// showOutcome replaces the outcome region's content. lines are strings or
// {text, failed}.
export function showOutcome(title, lines, failed = false) {
  const region = document.getElementById("outcome");
  region.classList.toggle("failed", failed);
  const parts = [h("p", { class: "outcome-title" }, timeEl(new Date().toISOString()), " ", title)];
  if (lines.length) parts.push(h("ul", {}, lines.map((line) => h("li", { class: line.failed ? "failed" : null }, line.text ?? line))));
  region.replaceChildren(...parts);
}

// clusterLines says what a call did in each cluster, from its
// ClusterResult list: done(result) when it worked, the error when not.
export function clusterLines(results, done) {
  if (!results?.length) return ["No cluster was affected."];
  return results.map((r) => r.error
    ? { text: `${r.cluster}: failed: ${r.error}`, failed: true }
    : { text: `${r.cluster}: ${done(r)}` });
}

// revertLines says what RevertApp pushed and where the fleet follows it.
export function revertLines(response) {
  const short = (sha) => (sha ?? "").slice(0, 8);
  const lines = [`Pushed ${short(response.commit)} to ${response.branch ?? "?"} of ${response.repoUrl ?? "?"}, reverting ${short(response.reverted)}: ${response.message ?? ""}`];
  for (const r of response.clusters ?? []) {
    lines.push(r.error ? { text: `${r.cluster}: failed: ${r.error}`, failed: true } : `${r.cluster}: publishing history ${r.historyId}`);
  }
  if (response.unchanged?.length) lines.push(`Unchanged in ${response.unchanged.join(", ")}.`);
  if (!response.clusters?.length && !response.unchanged?.length) lines.push("The hub has not published the revert yet; the fleet follows once it has fetched the commit.");
  return lines;
}
