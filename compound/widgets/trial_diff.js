// TrialDiffWidget view: per predictor, the instructions diff (<del>/<ins> words) and the demos added or dropped.
import { el } from "./_dom.js";

/** @typedef {{ predictor: string, instructions: [string, string][], changed: boolean,
 *              demos_added: string[], demos_removed: string[], demos: number }} Entry */

/** @param {{ model: any, el: HTMLElement }} ctx */
function render({ model, el: root }) {
  const box = el("div", "compound-trial-diff");
  root.appendChild(box);
  const draw = () => {
    const trial = model.get("trial");
    /** @type {Entry[]} */
    const entries = model.get("entries");
    const parts = [];
    if (trial !== null) parts.push(el("div", "compound-trial-diff-title", [`trial ${trial}: changes against the start`]));
    if (model.get("note")) parts.push(el("div", "compound-trial-diff-empty", [model.get("note")]));
    for (const entry of entries) {
      const words = entry.instructions.map(([op, text]) =>
        op === "-" ? el("del", "", [text]) : op === "+" ? el("ins", "", [text]) : el("span", "", [text]));
      const line = el("div", "compound-diff", [el("b", "", [`${entry.predictor}: `]),
        ...(entry.changed ? words.flatMap((w) => [w, " "]) : [el("span", "compound-trial-diff-empty", ["instructions unchanged"])])]);
      line.dataset.predictor = entry.predictor;
      const demos = [
        ...entry.demos_added.map((d) => el("li", "", [el("ins", "", [`+ ${d}`])])),
        ...entry.demos_removed.map((d) => el("li", "", [el("del", "", [`- ${d}`])])),
      ];
      parts.push(line);
      if (demos.length) parts.push(el("ul", "", demos));
    }
    box.replaceChildren(...parts);
    box.dataset.trial = trial === null ? "" : String(trial);
  };
  draw();
  model.on("change", draw);
  return () => model.off("change", draw);
}

export default { render };
