// CurationWidget view: summary, kind filter, a threshold per kind, issues with keep/drop, the clean() line.
import { el } from "./_dom.js";

/** @typedef {{ kind: string, threshold: number | null, rule: string, flagged: number, note: string, dropped: boolean }} Check */
/** @typedef {{ index: number, kind: string, score: number | null, reason: string, example: string }} Issue */

/** @param {{ model: any, el: HTMLElement }} ctx */
function render({ model, el: root }) {
  const head = el("div", "compound-curation-summary");
  const kinds = el("div", "compound-curation-kinds");
  const body = el("tbody");
  const table = el("table", "compound-table compound-curation-issues", [
    el("thead", "", [el("tr", "", ["#", "kind", "example", "reason", ""].map((h) => el("th", "", [h])))]),
    body,
  ]);
  const scroller = el("div", "compound-table-scroll", [table]);
  scroller.style.maxHeight = "320px";
  const error = el("div", "compound-job-error");
  const code = el("code", "compound-curation-code");
  root.append(el("div", "compound-curation", [head, kinds, scroller, error, el("div", "", ["equivalent: ", code])]));

  const setList = (/** @type {string} */ name, /** @type {number} */ index, /** @type {boolean} */ on) => {
    const list = new Set(model.get(name));
    if (on) list.add(index); else list.delete(index);
    model.set(name, [...list].sort((a, b) => a - b));
  };

  const draw = () => {
    const summary = model.get("summary");
    /** @type {Check[]} */
    const checks = model.get("checks");
    const selected = model.get("kind");
    head.textContent = `${summary.examples ?? 0} examples audited` +
      (summary.dropped_by_clean !== undefined ? `; clean() drops ${summary.dropped_by_clean}` : "");

    const buttons = [el("button", selected === "" ? "compound-active" : "", [`all`])];
    buttons[0].addEventListener("click", () => { model.set("kind", ""); model.save_changes(); });
    for (const check of checks) {
      const button = el("button", check.kind === selected ? "compound-active" : "", [`${check.kind} (${check.flagged})`]);
      button.title = `${check.rule}${check.note ? ` — ${check.note}` : ""}`;
      button.addEventListener("click", () => { model.set("kind", check.kind); model.save_changes(); });
      const input = /** @type {HTMLInputElement} */ (el("input", "compound-curation-threshold"));
      input.type = "number"; input.step = "0.01";
      input.value = check.threshold === null ? "" : String(check.threshold);
      input.placeholder = "default";
      input.addEventListener("change", () => {
        if (input.value === "") return;
        model.set("thresholds", { ...model.get("thresholds"), [check.kind]: Number(input.value) });
        model.save_changes();
      });
      buttons.push(el("span", "compound-curation-kind", [button, input]));
    }
    kinds.replaceChildren(...buttons);

    const keep = new Set(model.get("keep"));
    const drop = new Set(model.get("drop"));
    const droppedKinds = new Set(checks.filter((c) => c.dropped).map((c) => c.kind));
    /** @type {Issue[]} */
    const issues = model.get("issues").filter((/** @type {Issue} */ row) => !selected || row.kind === selected);
    body.replaceChildren(...issues.map((row) => {
      const dropped = drop.has(row.index) || (droppedKinds.has(row.kind) && !keep.has(row.index));
      const toggle = el("button", "", [dropped ? "keep" : "drop"]);
      toggle.addEventListener("click", () => {
        if (dropped) { setList("drop", row.index, false); setList("keep", row.index, true); }
        else { setList("keep", row.index, false); setList("drop", row.index, true); }
        model.save_changes();
      });
      const tr = el("tr", dropped ? "compound-curation-dropped" : "", [
        el("td", "", [String(row.index)]), el("td", "", [row.kind]),
        el("td", "compound-curation-text", [row.example]), el("td", "compound-curation-text", [row.reason]),
        el("td", "", [toggle]),
      ]);
      return tr;
    }));
    error.textContent = model.get("error");
    code.textContent = model.get("code");
  };
  draw();
  model.on("change", draw);
  return () => model.off("change", draw);
}

export default { render };
