// LineChartWidget view: an SVG line chart, one polyline (and dots) per series, redrawn on every change.
import { el, svg } from "./_dom.js";

const WIDTH = 560;
const HEIGHT = 220;
const PAD = { left: 52, right: 16, top: 12, bottom: 34 };
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"];

/** @typedef {{ name: string, points: [number, number][] }} Series */

/**
 * Round-ish axis label.
 * @param {number} v
 */
function tick(v) {
  return Math.abs(v) >= 100 ? v.toFixed(0) : String(Number(v.toPrecision(3)));
}

/**
 * @param {SVGElement} plot
 * @param {Series[]} series
 * @param {string} xLabel
 * @param {string} yLabel
 */
function draw(plot, series, xLabel, yLabel) {
  plot.replaceChildren();
  const all = series.flatMap((s) => s.points);
  const x0 = PAD.left, x1 = WIDTH - PAD.right, y0 = HEIGHT - PAD.bottom, y1 = PAD.top;
  plot.append(svg("line", { class: "compound-chart-axis", x1: x0, y1: y0, x2: x1, y2: y0 }));
  plot.append(svg("line", { class: "compound-chart-axis", x1: x0, y1: y0, x2: x0, y2: y1 }));
  const xText = svg("text", { class: "compound-chart-label", x: (x0 + x1) / 2, y: HEIGHT - 4, "text-anchor": "middle" });
  xText.textContent = xLabel;
  const yText = svg("text", { class: "compound-chart-label", x: 12, y: (y0 + y1) / 2,
    transform: `rotate(-90 12 ${(y0 + y1) / 2})`, "text-anchor": "middle" });
  yText.textContent = yLabel;
  plot.append(xText, yText);
  if (all.length === 0) {
    const empty = svg("text", { class: "compound-chart-empty", x: (x0 + x1) / 2, y: (y0 + y1) / 2, "text-anchor": "middle" });
    empty.textContent = "waiting for data…";
    plot.append(empty);
    return;
  }
  let [xmin, xmax] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [ymin, ymax] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  if (xmin === xmax) { xmin -= 1; xmax += 1; }
  if (ymin === ymax) { ymin -= 0.5; ymax += 0.5; }
  const sx = (/** @type {number} */ x) => x0 + ((x - xmin) / (xmax - xmin)) * (x1 - x0);
  const sy = (/** @type {number} */ y) => y0 - ((y - ymin) / (ymax - ymin)) * (y0 - y1);
  for (const [value, y, anchor] of [[ymin, y0, "end"], [ymax, y1 + 8, "end"]]) {
    const t = svg("text", { class: "compound-chart-tick", x: x0 - 4, y: Number(y), "text-anchor": String(anchor) });
    t.textContent = tick(Number(value));
    plot.append(t);
  }
  for (const [value, anchor] of [[xmin, "start"], [xmax, "end"]]) {
    const t = svg("text", { class: "compound-chart-tick", x: sx(Number(value)), y: y0 + 14, "text-anchor": String(anchor) });
    t.textContent = tick(Number(value));
    plot.append(t);
  }
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const line = svg("polyline", {
      class: "compound-chart-line",
      "data-series": s.name,
      points: s.points.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" "),
      stroke: color,
    });
    plot.append(line);
    if (s.points.length <= 60) {
      for (const p of s.points) plot.append(svg("circle", { class: "compound-chart-dot", cx: sx(p[0]), cy: sy(p[1]), r: 2.5, fill: color }));
    }
  });
}

/** @param {{ model: any, el: HTMLElement }} ctx */
function render({ model, el: root }) {
  const title = el("div", "compound-chart-title");
  const plot = svg("svg", { class: "compound-chart-plot", viewBox: `0 0 ${WIDTH} ${HEIGHT}`, width: WIDTH, height: HEIGHT });
  const legend = el("div", "compound-chart-legend");
  const box = el("div", "compound-chart", [title, plot, legend]);
  root.appendChild(box);
  const update = () => {
    /** @type {Series[]} */
    const series = model.get("series");
    title.textContent = model.get("title");
    draw(plot, series, model.get("x_label"), model.get("y_label"));
    legend.replaceChildren(...series.map((s, i) => {
      const swatch = el("span", "compound-chart-swatch");
      swatch.style.background = COLORS[i % COLORS.length];
      const last = s.points.length ? s.points[s.points.length - 1][1] : null;
      return el("span", "compound-chart-key", [swatch, `${s.name}${last === null ? "" : ` ${tick(last)}`}`]);
    }));
  };
  update();
  model.on("change", update);
  return () => model.off("change", update);
}

export default { render };
