// RoutingWidget view: router picker, threshold slider, the report's SVG curve, shares, samples and the code line.
import { el } from "./_dom.js";

/** @param {{ model: any, el: HTMLElement }} ctx */
function render({ model, el: root }) {
  const picker = /** @type {HTMLSelectElement} */ (el("select"));
  const slider = /** @type {HTMLInputElement} */ (el("input"));
  slider.type = "range";
  slider.min = "0";
  slider.step = "1";
  const value = el("span", "compound-routing-threshold");
  const chart = el("div", "compound-routing-chart");
  const summary = el("div", "compound-routing-summary");
  const shares = el("div", "compound-routing-shares");
  const samples = el("div", "compound-routing-samples");
  const code = el("pre", "compound-routing-code");
  const controls = el("div", "compound-routing-controls", [picker, "threshold", slider, value]);
  root.appendChild(el("div", "compound-routing", [controls, chart, summary, shares, samples, code]));

  picker.addEventListener("change", () => { model.set("router", picker.value); model.save_changes(); });
  slider.addEventListener("input", () => {
    /** @type {number[]} */
    const thresholds = model.get("thresholds");
    model.set("threshold", thresholds[Number(slider.value)]);
    model.save_changes();
  });

  const update = () => {
    /** @type {string[]} */
    const routers = model.get("routers");
    picker.replaceChildren(...routers.map((name) => {
      const option = /** @type {HTMLOptionElement} */ (el("option", "", [name]));
      option.value = name;
      option.selected = name === model.get("router");
      return option;
    }));
    picker.style.display = routers.length > 1 ? "" : "none";
    /** @type {number[]} */
    const thresholds = model.get("thresholds");
    const current = model.get("threshold");
    let nearest = 0;
    thresholds.forEach((t, i) => { if (Math.abs(t - current) < Math.abs(thresholds[nearest] - current)) nearest = i; });
    slider.max = String(Math.max(0, thresholds.length - 1));
    slider.value = String(nearest);
    value.textContent = current.toFixed(3);
    chart.innerHTML = model.get("svg");  // built by the Python report from numbers only (names are escaped)
    summary.textContent = model.get("summary");
    shares.replaceChildren(...model.get("shares").map((/** @type {{model: string, share: number}} */ s) => {
      const bar = el("div", "compound-routing-bar");
      bar.style.width = `${Math.round(200 * s.share)}px`;
      return el("div", "compound-routing-share", [`${s.model}`, bar, `${(100 * s.share).toFixed(1)}%`]);
    }));
    /** @type {Record<string, string[]>} */
    const byModel = model.get("samples");
    samples.replaceChildren(...Object.entries(byModel).map(([name, queries]) =>
      el("div", "", [el("b", "", [`sent to ${name}`]),
        el("ul", "", queries.length ? queries.map((q) => el("li", "", [q])) : [el("li", "", ["(none)"])])])));
    code.textContent = model.get("code");
    code.style.display = model.get("code") ? "" : "none";
  };
  update();
  model.on("change", update);
  return () => model.off("change", update);
}

export default { render };
