// Shared DOM helpers for compound's widgets; inlined into each widget's module by compound/widgets/_esm.py.

/**
 * Create an element with a class and children.
 * @param {string} tag
 * @param {string} [className]
 * @param {(Node | string)[]} [children]
 * @returns {HTMLElement}
 */
export function el(tag, className, children = []) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  for (const child of children) node.append(child);
  return node;
}

/**
 * Create an SVG element with attributes.
 * @param {string} tag
 * @param {Record<string, string | number>} [attrs]
 * @returns {SVGElement}
 */
export function svg(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

/**
 * "mm:ss" (or "h:mm:ss") between two epoch-second times; `end` null means now.
 * @param {number} start
 * @param {number | null} end
 * @returns {string}
 */
export function clock(start, end) {
  if (!start) return "";
  const seconds = Math.max(0, Math.floor((end ?? Date.now() / 1000) - start));
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  const pad = (/** @type {number} */ n) => String(n).padStart(2, "0");
  return h ? `${h}:${pad(m)}:${pad(s)}` : `${pad(m)}:${pad(s)}`;
}

/**
 * Format a cell value with a Python-style spec: ".3f", ".1%", ".3g", "d", "," or "" (as is).
 * @param {unknown} value
 * @param {string} spec
 * @returns {string}
 */
export function formatValue(value, spec) {
  if (value === null || value === undefined) return "";
  if (typeof value !== "number" || !spec) return String(value);
  const fixed = /^\.(\d+)f$/.exec(spec);
  if (fixed) return value.toFixed(Number(fixed[1]));
  const pct = /^\.(\d+)%$/.exec(spec);
  if (pct) return `${(value * 100).toFixed(Number(pct[1]))}%`;
  if (spec === "d") return String(Math.round(value));
  if (spec === ",") return Math.round(value).toLocaleString("en-US");
  const general = /^\.(\d+)g$/.exec(spec);
  if (general) return String(Number(value.toPrecision(Number(general[1]))));
  return String(value);
}
