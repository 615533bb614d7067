// The dashboard's only way to build DOM: elements with attributes,
// properties and text, never markup parsed from strings, so data (app
// names, commit and event messages) is always text.

import { formatTime } from "./words.js";

// Properties set as such rather than as attributes: an input's current
// value differs from its value attribute once the user types.
const properties = new Set(["value", "checked", "selected"]);

// h creates an HTML element. attrs are attributes, except: on is an object
// of event listeners, the keys above are properties, true is an empty
// attribute and false, null or undefined leave the attribute out.
// children are nodes, strings (as text) or arrays of them; null, undefined
// and false are skipped.
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

const svgNamespace = "http://www.w3.org/2000/svg";

// s creates an SVG element, as h does an HTML one.
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(svgNamespace, tag), attrs, children);
}

function build(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (key === "on") {
      for (const [type, listener] of Object.entries(value)) el.addEventListener(type, listener);
    } else if (properties.has(key)) {
      el[key] = value;
    } else if (value === true) {
      el.setAttribute(key, "");
    } else if (value !== false && value !== null && value !== undefined) {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

// timeEl shows an RFC 3339 time in local words ("14:03:12" today, the
// date otherwise) with the exact time in its datetime attribute and title.
export function timeEl(iso) {
  if (!iso) return h("span", {}, "never");
  const at = new Date(iso);
  return h("time", { datetime: iso, title: at.toString() }, formatTime(at));
}

// setText sets el's text when it differs, so that a live region that a
// re-render leaves unchanged is not announced again.
export function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

// replaceKeepingFocus replaces container's children with nodes and, when
// the focus was on an element with a data-key inside it, focuses the new
// element with the same key, so a live re-render does not throw a
// keyboard user back to the top of the page.
export function replaceKeepingFocus(container, nodes) {
  const active = document.activeElement;
  const key = active && container.contains(active) ? active.dataset?.key : undefined;
  container.replaceChildren(...nodes);
  if (key) focusKey(key, container);
}

// focusKey focuses the element with data-key key under root, if any, and
// reports whether it did.
export function focusKey(key, root = document) {
  const el = root.querySelector(`[data-key="${CSS.escape(key)}"]`);
  if (!el) return false;
  el.focus();
  return true;
}

// debounce calls fn once wait ms have passed without another call.
export function debounce(fn, wait) {
  let timer;
  const debounced = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), wait);
  };
  debounced.cancel = () => clearTimeout(timer);
  return debounced;
}

// onNextFrame returns a function that schedules fn for the next animation
// frame, once however often it is called before then: a burst of stream
// messages makes one render.
export function onNextFrame(fn) {
  let pending = 0;
  const schedule = () => {
    if (!pending) pending = requestAnimationFrame(() => { pending = 0; fn(); });
  };
  schedule.cancel = () => { cancelAnimationFrame(pending); pending = 0; };
  return schedule;
}
