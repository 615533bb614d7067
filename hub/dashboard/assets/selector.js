// Kubernetes label selectors, as `flotilla app list --selector` takes
// them: requirements separated by commas, all of which must match; and
// the "Cluster labels" field of the fleet and clusters views.
//
//   env=production   env==production   env!=staging
//   tier in (web,api)   tier notin (batch)   gpu   !gpu

import { h } from "./dom.js";

// A label name, and a label value when not empty: at most 63 characters,
// alphanumeric at both ends, dashes, underscores and dots inside.
const name = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
// A label key's optional prefix: a DNS subdomain.
const prefix = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

const keyPattern = "([^\\s=!(),]+)";
const forms = [
  { re: new RegExp(`^!\\s*${keyPattern}$`), op: "!" },
  { re: new RegExp(`^${keyPattern}\\s+(in|notin)\\s*\\((.*)\\)$`) },
  { re: new RegExp(`^${keyPattern}\\s*(==|=|!=)\\s*([^\\s=!(),]*)$`) },
  { re: new RegExp(`^${keyPattern}$`), op: "exists" },
];

// parseSelector turns text into a function of a cluster's labels (an
// object) that says whether they match. Empty text matches every cluster.
// It throws an Error that says what is wrong with the text.
export function parseSelector(text) {
  const requirements = splitTopLevel(text.trim()).map(parseRequirement);
  return (labels) => requirements.every((matches) => matches(labels ?? {}));
}

// splitTopLevel splits at the commas outside parentheses.
function splitTopLevel(text) {
  if (text === "") return [];
  const parts = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "(") depth++;
    else if (c === ")") depth--;
    if (depth < 0 || depth > 1) throw new Error(`unbalanced parentheses at character ${i + 1}`);
    if (c === "," && depth === 0) {
      parts.push(text.slice(start, i).trim());
      start = i + 1;
    }
  }
  if (depth !== 0) throw new Error("a parenthesis is not closed");
  parts.push(text.slice(start).trim());
  return parts;
}

function parseRequirement(text) {
  if (text === "") throw new Error("an empty requirement (two commas, or one at an end)");
  for (const form of forms) {
    const m = form.re.exec(text);
    if (!m) continue;
    const key = checkKey(m[1]);
    const op = form.op ?? m[2];
    switch (op) {
      case "exists":
        return (labels) => Object.hasOwn(labels, key);
      case "!":
        return (labels) => !Object.hasOwn(labels, key);
      case "=":
      case "==": {
        const value = checkValue(m[3], key);
        return (labels) => Object.hasOwn(labels, key) && labels[key] === value;
      }
      case "!=": {
        const value = checkValue(m[3], key);
        return (labels) => labels[key] !== value;
      }
      case "in":
      case "notin": {
        if (m[3].trim() === "") throw new Error(`"${text}": ${op} needs at least one value`);
        const set = new Set(m[3].split(",").map((v) => checkValue(v.trim(), key)));
        return op === "in"
          ? (labels) => Object.hasOwn(labels, key) && set.has(labels[key])
          : (labels) => !Object.hasOwn(labels, key) || !set.has(labels[key]);
      }
    }
  }
  throw new Error(`"${text}" is not a requirement: write k=v, k!=v, k in (a,b), k notin (a,b), k or !k`);
}

function checkKey(key) {
  const slash = key.indexOf("/");
  const keyName = slash < 0 ? key : key.slice(slash + 1);
  const keyPrefix = slash < 0 ? null : key.slice(0, slash);
  if (!name.test(keyName) || (keyPrefix !== null && (keyPrefix.length > 253 || !prefix.test(keyPrefix)))) {
    throw new Error(`"${key}" is not a label key: at most 63 letters, digits, '-', '_' or '.', alphanumeric at both ends, after an optional DNS prefix and '/'`);
  }
  return key;
}

function checkValue(value, key) {
  if (value !== "" && !name.test(value)) {
    throw new Error(`"${value}" (of ${key}) is not a label value: at most 63 letters, digits, '-', '_' or '.', alphanumeric at both ends`);
  }
  return value;
}

// selectorField is the #filter-selector field: a label, the input, a hint
// and the error of an invalid selector, which then filters nothing.
// onChange is called with the text after each edit. field.matches(labels)
// is the current selector's verdict.
export function selectorField(text, hint, onChange) {
  const error = h("p", { class: "field-error", id: "filter-selector-error" });
  const input = h("input", {
    id: "filter-selector", name: "selector", type: "text", value: text, autocomplete: "off", spellcheck: "false",
    "aria-describedby": "filter-selector-help filter-selector-error",
    on: { input: () => { parse(); onChange(input.value); } },
  });
  const field = {
    element: h("div", { class: "field" },
      h("label", { for: "filter-selector" }, "Cluster labels"), input, h("p", { class: "hint", id: "filter-selector-help" }, hint), error),
    matches: () => true,
  };
  function parse() {
    try {
      field.matches = parseSelector(input.value);
      error.textContent = "";
      input.removeAttribute("aria-invalid");
    } catch (err) {
      field.matches = () => true;
      error.textContent = `Not a label selector, so not filtering: ${err.message}`;
      input.setAttribute("aria-invalid", "true");
    }
  }
  parse();
  return field;
}
