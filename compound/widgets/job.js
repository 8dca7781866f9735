// JobWidget view: title, status badge, progress bar, elapsed clock, stats and the Stop button (.compound-stop).
import { clock, el } from "./_dom.js";

/** @param {{ model: any, el: HTMLElement }} ctx */
function render({ model, el: root }) {
  const name = el("span", "compound-job-name");
  const kind = el("span", "compound-job-kind");
  const status = el("span", "compound-job-status");
  const time = el("span", "compound-job-clock");
  const stop = /** @type {HTMLButtonElement} */ (el("button", "compound-stop", ["Stop"]));
  stop.type = "button";
  stop.title = "End the run at its next safe point and keep the best result so far";
  const fill = el("div", "compound-progress-fill");
  const track = el("div", "compound-progress-track", [fill]);
  const stats = el("div", "compound-job-stats");
  const detail = el("div", "compound-job-detail");
  const error = el("div", "compound-job-error");
  const head = el("div", "compound-job-head", [name, kind, status, time, stop]);
  const box = el("div", "compound-job", [head, track, stats, detail, error]);
  root.appendChild(box);

  stop.addEventListener("click", () => {
    stop.disabled = true;
    stop.textContent = "Stopping…";
    model.send({ type: "stop" });
  });

  const draw = () => {
    const state = model.get("status");
    box.dataset.status = state;
    box.dataset.jobId = model.get("job_id");
    name.textContent = model.get("name");
    kind.textContent = model.get("kind");
    status.textContent = state;
    status.dataset.status = state;
    const progress = model.get("progress");
    track.classList.toggle("compound-indeterminate", progress === null && state === "running");
    fill.style.width = progress === null ? (state === "running" ? "30%" : "100%") : `${(progress * 100).toFixed(1)}%`;
    time.textContent = clock(model.get("started_at"), model.get("ended_at"));
    stats.replaceChildren(...model.get("stats").map((/** @type {[string, string]} */ [label, value]) => {
      const item = el("span", "compound-stat", [el("span", "compound-stat-label", [label]), el("span", "compound-stat-value", [value])]);
      item.dataset.stat = label;
      return item;
    }));
    detail.textContent = model.get("detail");
    error.textContent = model.get("error");
    const running = state === "running";
    stop.disabled = !running;
    stop.textContent = state === "stopping" ? "Stopping…" : "Stop";
  };
  draw();
  model.on("change", draw);
  const ticker = setInterval(() => {
    if (!model.get("ended_at")) time.textContent = clock(model.get("started_at"), null);
  }, 1000);
  return () => {
    clearInterval(ticker);
    model.off("change", draw);
  };
}

export default { render };
