// The CLI's words for what the API returns (internal/cli), so the
// dashboard and `flotilla app list` say the same thing. Pure functions,
// checked with node.

// enumWord is an enum value as the CLI shows it: SYNC_STATUS_OUT_OF_SYNC
// with prefix SYNC_STATUS_ is "OutOfSync" (flotillav1.EnumWord). protojson
// omits a zero enum, so undefined is the _UNSPECIFIED value.
export function enumWord(value, prefix) {
  const name = value ?? prefix + "UNSPECIFIED";
  return name.slice(name.startsWith(prefix) ? prefix.length : 0).toLowerCase().split("_")
    .map((part) => part.charAt(0).toUpperCase() + part.slice(1)).join("");
}

// revision is what a desired state was published for: a chart's version
// with the commit of its Application, else the commit's first 8 characters.
export function revision(source) {
  const commit = (source?.commit ?? "").slice(0, 8);
  return source?.chartVersion ? `${source.chartVersion} (${commit})` : commit;
}

// firstLine is a commit message's subject.
export function firstLine(text) {
  return (text ?? "").split("\n", 1)[0].trim();
}

// oneLine folds runs of white space, newlines included, into one space.
export function oneLine(text) {
  return (text ?? "").split(/\s+/).filter(Boolean).join(" ");
}

// appSync is an application's sync word as `flotilla app list` has it:
// OutOfSync while the agent has not reported the newest desired state.
export function appSync(info) {
  if (!info.desired) return "Refused";
  if (!info.status) return "Unknown";
  if (String(info.status.historyId ?? "0") !== String(info.desired.historyId ?? "0")) return "OutOfSync";
  return enumWord(info.status.syncStatus, "SYNC_STATUS_");
}

// appHealth is an application's health word; while its cluster is offline,
// what the agent last reported, never a health the cluster may no longer
// have.
export function appHealth(info) {
  const health = info.status ? enumWord(info.status.health, "HEALTH_STATUS_") : "Unknown";
  if (!info.offlineSince) return health;
  return info.status ? `last reported ${health}` : "never reported";
}

// initiatorWord is a history entry's INITIATOR column: "Rollback to 3 by
// alice", "Git (removed)".
export function initiatorWord(entry) {
  let word = enumWord(entry.initiator, "INITIATOR_");
  if (entry.pin) word += ` to ${entry.pin.rolledBackTo ?? "0"} by ${entry.pin.by ?? ""}`;
  if (entry.deleted) word += " (removed)";
  return word;
}

// labelString is a cluster's labels as k=v, sorted, comma separated.
export function labelString(labels) {
  return Object.entries(labels ?? {}).map(([k, v]) => `${k}=${v}`).sort().join(",");
}

// clusterState is what a cluster is now, with the time it refers to:
// Revoked, Connected, Never connected or Offline since its last heartbeat.
export function clusterState(cluster) {
  if (cluster.revokedAt) return { word: "Revoked", at: cluster.revokedAt, kind: "revoked" };
  if (cluster.connected) return { word: "Connected", kind: "connected" };
  if (!cluster.lastHeartbeat) return { word: "Never connected", kind: "never" };
  return { word: "Offline since", at: cluster.lastHeartbeat, kind: "offline" };
}

const count = new Intl.NumberFormat("en");

// formatCount writes n with thousands separators: 1,000.
export function formatCount(n) {
  return count.format(n);
}

const pad = (n) => String(n).padStart(2, "0");

// formatTime is a local time: "14:03:12" when it is today, else
// "2025-03-01 14:03".
export function formatTime(at, now = new Date()) {
  if (Number.isNaN(at.getTime())) return "unknown time";
  const clock = `${pad(at.getHours())}:${pad(at.getMinutes())}`;
  if (at.toDateString() === now.toDateString()) return `${clock}:${pad(at.getSeconds())}`;
  return `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())} ${clock}`;
}

// measuredValue is a measurement's value as a number: the first number in
// the provider's string ("[0.012]" is 0.012), or null when it has none.
export function measuredValue(value) {
  const match = /[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?/.exec(value ?? "");
  return match ? Number(match[0]) : null;
}

// conditionThreshold is the number an analysis condition compares the
// result with ("result[0] < 0.05" is 0.05), or null when it is not a
// plain comparison.
export function conditionThreshold(condition) {
  const match = /(?:<=|>=|<|>|==)\s*([-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)\s*$/.exec(condition ?? "");
  return match ? Number(match[1]) : null;
}

// goDuration writes whole seconds as Go's time.Duration does, the CLI's
// way: 45s, 5m0s, 1h30m0s.
export function goDuration(seconds) {
  let rest = Math.max(0, Math.floor(Number(seconds) || 0));
  if (rest < 60) return `${rest}s`;
  const hours = Math.floor(rest / 3600);
  rest -= hours * 3600;
  const minutes = Math.floor(rest / 60);
  const secs = rest - minutes * 60;
  return `${hours ? `${hours}h` : ""}${minutes}m${secs}s`;
}

// fleetPhaseWord is a fleet rollout's PHASE: Progressing, Paused,
// Succeeded, Failed or Aborted.
export function fleetPhaseWord(rollout) {
  return enumWord(rollout?.phase, "FLEET_PHASE_");
}

// wavePhaseWord is a wave's PHASE: Pending, Waiting, Progressing, Gated,
// Succeeded, Failed or Skipped.
export function wavePhaseWord(wave) {
  return enumWord(wave?.phase, "WAVE_PHASE_");
}

// gateWords is a wave's GATE as `flotilla fleet status` has it: "bake
// 5m0s, analysis error-rate (all must pass), approval", or "health" for a
// wave that only needs its clusters Synced and Healthy.
export function gateWords(gate) {
  const parts = [];
  if (Number(gate?.bakeSeconds ?? 0) > 0) parts.push(`bake ${goDuration(gate.bakeSeconds)}`);
  if (gate?.analysis) {
    const names = (gate.analysis.templates ?? []).map((t) => t.templateName ?? "").join("+");
    parts.push(`analysis ${names} (${gate.minSuccessful || "all"} must pass)`);
  }
  if (gate?.approval) parts.push("approval");
  return parts.length ? parts.join(", ") : "health";
}

// fleetAnalysisWords is a wave target's ANALYSIS as `flotilla fleet
// status` has it: the phase, then each metric=value.
export function fleetAnalysisWords(analysis) {
  if (!analysis) return "";
  return [analysis.phase ?? "", ...(analysis.measurements ?? []).map((m) => `${m.metric ?? ""}=${m.value ?? ""}`)].join(" ");
}
