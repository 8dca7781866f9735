"""The widgets' ES modules run in a real (headless Chromium) browser against the state Python sends them.

No Jupyter here: each module's `render({model, el})` gets a minimal stand-in for anywidget's model (get/set/on/off/
save_changes/send) holding the widget's real synced state. The full notebook path (JupyterLab, the widget manager,
the kernel) is covered by tests/ui.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import dspy
import pytest

from compound.optimize.job import OptimizationJob
from compound.widgets import Progress, ProgressWidget, show

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs chromium")

HARNESS = """
function standInModel(state) {
  const handlers = {};
  return {
    get: (key) => state[key],
    set: (key, value) => { state[key] = value; },
    save_changes: () => (handlers.change || []).forEach((f) => f()),
    on: (event, f) => { (handlers[event] ||= []).push(f); },
    off: () => {},
    send: (message) => window.sent.push(message),
  };
}
window.sent = [];
const errors = [];
for (const [name, part] of Object.entries(window.PARTS)) {
  try {
    const url = URL.createObjectURL(new Blob([part.esm], { type: "text/javascript" }));
    const module = await import(url);
    module.default.render({ model: standInModel(part.state), el: document.getElementById(name) });
  } catch (error) {
    errors.push(`${name}: ${error}`);
  }
}
const scoreHeader = () => document.querySelector(".compound-table th[data-key=score]");
scoreHeader().click();                       // sort by score, ascending
scoreHeader().click();                       // again: descending
document.querySelector(".compound-stop").click();
document.querySelector('.compound-table tbody tr[data-row="2"]').click();   // select trial 2
document.body.dataset.errors = JSON.stringify(errors);
document.body.dataset.sent = JSON.stringify(window.sent);
document.body.dataset.selected = JSON.stringify(window.PARTS.table.state.selected);
"""


def synced_state(widget) -> dict:
    getattr(widget, "flush", lambda: None)()
    skip = {"layout", "tabbable", "tooltip", "comm"}
    return {k: v for k, v in widget.get_state().items() if not k.startswith("_") and k not in skip}


@pytest.fixture()
def page(tmp_path):
    program = dspy.Predict("question -> answer")
    trainset = [dspy.Example(question="q", answer="a").with_inputs("question")]
    job = OptimizationJob(program, trainset, dspy.BootstrapFewShot(metric=lambda e, p, t=None: 1.0),
                          compile_kwargs={"num_trials": 10})
    job.started_at = time.time()  # as if started: the header's clock ticks from here
    for trial, score in enumerate([0.25, 0.5, 0.4, 0.75, 0.6], 1):
        candidate = program.deepcopy()
        candidate.signature = candidate.signature.with_instructions(f"Answer briefly, take {trial}.")
        job._record_trial(kind="full", candidate=f"{trial % 3} demos", score=score, n=20, program=candidate)
    view = show(job)
    view.diff.show_trial(4)
    widgets = {"job": view.children[0], "chart": view.children[1], "table": view.children[2],
               "diff": view.children[3], "progress": ProgressWidget(Progress(total=10, description="demos", value=4))}
    parts = {name: {"esm": w._esm, "state": synced_state(w)} for name, w in widgets.items()}
    body = "".join(f'<div id="{name}"></div>' for name in parts)
    html = (f"<html><head><style>{widgets['job']._css}</style></head><body>{body}"
            f"<script>window.PARTS = {json.dumps(parts)};</script>"
            f'<script type="module">{HARNESS}</script></body></html>')
    path = tmp_path / "widgets.html"
    path.write_text(html)
    return path


def render(path, *extra: str) -> str:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000", *extra,
               path.as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=120).stdout


def test_widgets_render_sort_and_send_stop(page, tmp_path):
    dom = render(page, "--dump-dom")
    assert 'data-errors="[]"' in dom
    assert 'data-sent="[{&quot;type&quot;:&quot;stop&quot;}]"' in dom  # the Stop click's one-off message
    scores = [cell.split(">")[1] for cell in dom.split('<td data-key="score"')[1:]]
    assert [s.split("<")[0] for s in scores] == ["0.750", "0.600", "0.500", "0.400", "0.250"]
    assert dom.count('class="compound-chart-line"') == 2  # score and best so far
    assert "4/10 (40%)" in dom  # the progress bar's count
    assert 'data-selected="2"' in dom  # a click on a trial row selects it (the Python side then shows its diff)
    assert 'data-trial="4"' in dom and "<ins>Answer briefly, take 4.</ins>" in dom and "<del>" in dom  # trial 4's instruction diff
    assert 'class="compound-stop"' in dom and "Stopping…" in dom
    render(page, "--window-size=800,900", f"--screenshot={tmp_path / 'widgets.png'}")
    assert (tmp_path / "widgets.png").stat().st_size > 10_000
