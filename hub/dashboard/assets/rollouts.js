// An application's Argo Rollouts in one cluster: where each is, its
// steps with the current one, its ReplicaSets, and its analysis with each
// metric's measurements plotted over time beside its conditions.

import { h, s, timeEl } from "./dom.js";
import { conditionThreshold, formatTime, measuredValue } from "./words.js";

// rolloutArticle is one RolloutStatus; headings start at h3, under the
// cluster's h2.
export function rolloutArticle(ro) {
  const name = `${ro.namespace ?? ""}/${ro.name ?? ""}`;
  return h("article", { class: "rollout", "data-rollout": name },
    h("h3", {}, `Rollout ${name}`),
    h("dl", { class: "facts" },
      fact("Strategy", ro.strategy || "unknown"),
      fact("Phase", ro.phase || "unknown"),
      ro.steps ? fact("Step", stepWords(ro)) : null,
      ro.strategy === "canary" ? fact("Canary weight", `${ro.canaryWeight ?? 0} %`) : null,
      ro.message ? fact("Message", ro.message) : null),
    stepList(ro),
    replicaSetTable(ro, name),
    ro.analysis ? analysisPart(ro.analysis) : null);
}

function fact(term, ...details) {
  return h("div", {}, h("dt", {}, term), h("dd", {}, details));
}

// stepWords counts steps from 1; step is steps + 1 once all are done.
function stepWords(ro) {
  const step = ro.step ?? 0;
  const steps = ro.steps ?? 0;
  if (step === 0) return "not yet seen by its controller";
  if (step > steps) return `all ${steps} steps done`;
  return `step ${step} of ${steps}`;
}

function stepList(ro) {
  const names = ro.stepNames ?? [];
  if (!names.length) return null;
  const step = ro.step ?? 0;
  return [
    h("h4", {}, "Steps"),
    h("ol", { class: "steps" }, names.map((name, i) => {
      const n = i + 1;
      if (n === step) return h("li", { class: "current", "aria-current": "step" }, name, " ", h("span", { class: "mark" }, "current"));
      if (n < step) return h("li", { class: "done" }, name, " ", h("span", { class: "mark" }, "done"));
      return h("li", {}, name);
    })),
  ];
}

function replicaSetTable(ro, name) {
  const sets = ro.replicaSets ?? [];
  if (!sets.length) return null;
  return h("table", { class: "replica-sets" },
    h("caption", {}, `ReplicaSets of ${name}`),
    h("thead", {}, h("tr", {}, ["NAME", "ROLE", "REPLICAS", "READY", "AVAILABLE", "IMAGES"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, sets.map((rs) => h("tr", {},
      h("th", { scope: "row" }, rs.name ?? ""),
      h("td", {}, rs.role || "old"),
      h("td", { class: "number" }, String(rs.replicas ?? 0)),
      h("td", { class: "number" }, String(rs.readyReplicas ?? 0)),
      h("td", { class: "number" }, String(rs.availableReplicas ?? 0)),
      h("td", {}, (rs.images ?? []).join(", "))))));
}

function analysisPart(analysis) {
  return [
    h("h4", {}, `Analysis ${analysis.name ?? ""}`),
    h("p", {}, `Phase: ${analysis.phase || "unknown"}`, analysis.message ? ` — ${analysis.message}` : null),
    (analysis.measurements ?? []).map(metricFigure),
  ];
}

// metricFigure is one metric: a caption with its latest measurement, the
// chart, the conditions, and a table of the same points for screen
// readers.
function metricFigure(m) {
  const points = (m.history ?? []).map((p) => ({
    at: p.finishedAt ? Date.parse(p.finishedAt) : NaN,
    iso: p.finishedAt,
    raw: p.value ?? "",
    value: measuredValue(p.value),
    phase: p.phase || "Unknown",
  }));
  const plotted = points.filter((p) => p.value !== null && Number.isFinite(p.value));
  const counts = `${m.count ?? 0} measured, ${m.failed ?? 0} failed${m.errors ? `, ${m.errors} errors` : ""}`;
  return h("figure", { class: "metric" },
    h("figcaption", {}, `${m.metric ?? "metric"}: ${m.phase || "unknown"}, latest ${m.value || "none"} (${counts})`,
      m.message ? ` — ${m.message}` : null),
    plotted.length ? chart(m, plotted) : h("p", {}, "No numeric measurement to plot yet."),
    h("p", { class: "conditions" },
      m.successCondition ? ["Succeeds when ", h("code", {}, m.successCondition)] : "No success condition",
      m.failureCondition ? ["; fails when ", h("code", {}, m.failureCondition)] : null, "."),
    plotted.length ? legend(plotted) : null,
    points.length ? h("table", { class: "visually-hidden" },
      h("caption", {}, `Measurements of ${m.metric ?? "the metric"}, oldest first`),
      h("thead", {}, h("tr", {}, ["TIME", "VALUE", "PHASE"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, points.map((p) => h("tr", {}, h("td", {}, timeEl(p.iso)), h("td", {}, p.raw), h("td", {}, p.phase))))) : null);
}

// The chart's size in SVG units; CSS scales it to the column.
const width = 360;
const height = 150;
const margin = { left: 52, right: 16, top: 12, bottom: 26 };

// markers draws each phase as its own shape, so that no phase is told by
// colour alone.
const markers = {
  Successful: { color: "#1b6e20", draw: (c) => s("circle", { r: 4.5, fill: c }) },
  Failed: { color: "#b3261e", draw: (c) => s("path", { d: "M-4.5,-4.5L4.5,4.5M-4.5,4.5L4.5,-4.5", stroke: c, "stroke-width": 2.5 }) },
  Error: { color: "#8a4600", draw: (c) => s("rect", { x: -4, y: -4, width: 8, height: 8, fill: c }) },
  Inconclusive: { color: "#4d5156", draw: (c) => s("path", { d: "M0,-5.5L5.5,0L0,5.5L-5.5,0Z", fill: c }) },
};
const markerOf = (phase) => markers[phase] ?? markers.Inconclusive;

function chart(m, points) {
  const thresholds = [
    { kind: "success", value: conditionThreshold(m.successCondition) },
    { kind: "failure", value: conditionThreshold(m.failureCondition) },
  ].filter((t) => t.value !== null);
  const values = [...points.map((p) => p.value), ...thresholds.map((t) => t.value)];
  let low = Math.min(0, ...values);
  let high = Math.max(...values);
  if (high === low) high = low + 1;
  const timed = points.every((p) => Number.isFinite(p.at)) && points.at(-1).at > points[0].at;
  const plotWidth = width - margin.left - margin.right;
  const plotHeight = height - margin.top - margin.bottom;
  const x = (p, i) => margin.left + (points.length === 1 ? plotWidth / 2
    : timed ? ((p.at - points[0].at) / (points.at(-1).at - points[0].at)) * plotWidth
      : (i / (points.length - 1)) * plotWidth);
  const y = (v) => margin.top + (1 - (v - low) / (high - low)) * plotHeight;
  const last = points.at(-1);
  const label = `${m.metric ?? "Metric"} over time: ${points.length} measurements` +
    (timed ? ` from ${formatTime(new Date(points[0].at))} to ${formatTime(new Date(last.at))}` : "") +
    `, values ${short(Math.min(...points.map((p) => p.value)))} to ${short(Math.max(...points.map((p) => p.value)))}` +
    `, latest ${last.raw} (${last.phase})`;

  return s("svg", { class: "chart", role: "img", "aria-label": label, viewBox: `0 0 ${width} ${height}` },
    s("line", { x1: margin.left, y1: margin.top, x2: margin.left, y2: height - margin.bottom, stroke: "#5f6368" }),
    s("line", { x1: margin.left, y1: height - margin.bottom, x2: width - margin.right, y2: height - margin.bottom, stroke: "#5f6368" }),
    s("text", { x: margin.left - 6, y: y(high) + 4, "text-anchor": "end", class: "axis" }, short(high)),
    s("text", { x: margin.left - 6, y: y(low) + 4, "text-anchor": "end", class: "axis" }, short(low)),
    timed ? [
      s("text", { x: margin.left, y: height - 8, class: "axis" }, formatTime(new Date(points[0].at))),
      s("text", { x: width - margin.right, y: height - 8, "text-anchor": "end", class: "axis" }, formatTime(new Date(last.at))),
    ] : null,
    thresholds.map((t) => [
      s("line", {
        x1: margin.left, y1: y(t.value), x2: width - margin.right, y2: y(t.value),
        stroke: t.kind === "success" ? markers.Successful.color : markers.Failed.color, "stroke-dasharray": "5 4",
      }),
      s("text", { x: width - margin.right, y: y(t.value) - 4, "text-anchor": "end", class: "axis" }, `${t.kind} ${short(t.value)}`),
    ]),
    s("polyline", { points: points.map((p, i) => `${x(p, i)},${y(p.value)}`).join(" "), fill: "none", stroke: "#80868b", "stroke-width": 1.5 }),
    points.map((p, i) => {
      const marker = markerOf(p.phase);
      return s("g", { transform: `translate(${x(p, i)},${y(p.value)})` },
        s("title", {}, `${p.iso ? formatTime(new Date(p.at)) + ": " : ""}${p.raw} ${p.phase}`), marker.draw(marker.color));
    }));
}

// legend names the shapes the chart uses.
function legend(points) {
  const phases = [...new Set(points.map((p) => p.phase))];
  return h("ul", { class: "legend" }, phases.map((phase) => {
    const marker = markerOf(phase);
    return h("li", {},
      s("svg", { viewBox: "-6 -6 12 12", width: 12, height: 12, "aria-hidden": "true", focusable: "false" }, marker.draw(marker.color)),
      " ", phase);
  }));
}

// short writes an axis value with at most 3 significant digits.
function short(v) {
  return String(Number(v.toPrecision(3)));
}
