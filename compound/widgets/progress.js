// ProgressWidget view: a bar, "value/total (pct)" and an elapsed clock that ticks locally while running.
import { clock, el } from "./_dom.js";

/** @typedef {{ value: number, total: number | null, description: string, status: string,
 *              started_at: number, ended_at: number | null }} ProgressState */

/**
 * @param {{ get: (key: string) => any }} model
 * @returns {ProgressState}
 */
function read(model) {
  return {
    value: model.get("value"),
    total: model.get("total"),
    description: model.get("description"),
    status: model.get("status"),
    started_at: model.get("started_at"),
    ended_at: model.get("ended_at"),
  };
}

/** @param {{ model: any, el: HTMLElement }} ctx */
function render({ model, el: root }) {
  const label = el("span", "compound-progress-label");
  const fill = el("div", "compound-progress-fill");
  const track = el("div", "compound-progress-track", [fill]);
  const count = el("span", "compound-progress-count");
  const time = el("span", "compound-progress-clock");
  const box = el("div", "compound-progress", [label, track, count, time]);
  root.appendChild(box);

  const draw = () => {
    const s = read(model);
    box.dataset.status = s.status;
    label.textContent = s.description;
    if (s.total) {
      const pct = Math.min(1, s.value / s.total);
      fill.style.width = `${(pct * 100).toFixed(1)}%`;
      box.classList.remove("compound-indeterminate");
      count.textContent = `${s.value}/${s.total} (${Math.round(pct * 100)}%)`;
    } else {
      fill.style.width = s.status === "running" ? "30%" : "100%";
      box.classList.toggle("compound-indeterminate", s.status === "running");
      count.textContent = `${s.value}`;
    }
    time.textContent = clock(s.started_at, s.ended_at);
  };
  draw();
  model.on("change", draw);
  const ticker = setInterval(() => {
    if (model.get("status") === "running") time.textContent = clock(model.get("started_at"), null);
  }, 1000);
  return () => {
    clearInterval(ticker);
    model.off("change", draw);
  };
}

export default { render };
