"""The curation widget's ES module in headless Chromium, against the state Python sends it (no Jupyter here)."""

import json
import shutil
import subprocess

import pytest

import compound as cp
from compound.widgets.curation import CurationWidget

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs chromium")

HARNESS = """
const state = window.STATE;
const handlers = {};
const model = {
  get: (key) => state[key], set: (key, value) => { state[key] = value; },
  save_changes: () => (handlers.change || []).forEach((f) => f()),
  on: (event, f) => { (handlers[event] ||= []).push(f); }, off: () => {}, send: () => {},
};
const errors = [];
try {
  const url = URL.createObjectURL(new Blob([window.ESM], { type: "text/javascript" }));
  (await import(url)).default.render({ model, el: document.getElementById("root") });
  document.querySelector(".compound-curation-issues tbody button").click();   // keep the first flagged row
  [...document.querySelectorAll(".compound-curation-kinds button")].find((b) => b.textContent.startsWith("leak")).click();
  const input = document.querySelector(".compound-curation-threshold");
  input.value = "0.97"; input.dispatchEvent(new Event("change"));
} catch (error) { errors.push(String(error)); }
document.body.dataset.errors = JSON.stringify(errors);
document.body.dataset.state = JSON.stringify({ keep: state.keep, kind: state.kind, thresholds: state.thresholds });
"""


def test_the_view_renders_filters_and_sends_choices(tmp_path):
    triage = cp.zoo.tasks["triage"]
    rows = triage.train[:80]
    report = cp.curate(rows + [rows[3].copy(), triage.dev[1]], against={"dev": triage.dev},
                       fields=["ticket", "category"])
    widget = CurationWidget(report)
    widget.flush()
    state = {k: v for k, v in widget.get_state().items() if not k.startswith("_") and k not in {"layout", "comm"}}
    page = tmp_path / "curation.html"
    page.write_text(f"<html><head><style>{widget._css}</style></head><body><div id='root'></div>"
                    f"<script>window.STATE = {json.dumps(state)}; window.ESM = {json.dumps(widget._esm)};</script>"
                    f'<script type="module">{HARNESS}</script></body></html>')
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000", "--dump-dom",
               page.as_uri()]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120).stdout
    assert 'data-errors="[]"' in dom
    sent = json.loads(dom.split('data-state="')[1].split('"')[0].replace("&quot;", '"'))
    first = widget.issues[0]["index"]
    assert sent == {"keep": [first], "kind": "leak", "thresholds": {"duplicate": 0.97}}
    assert "is dev #1" in dom and "equivalent: " in dom
    subprocess.run([*command[:-2], "--window-size=900,700", f"--screenshot={tmp_path / 'curation.png'}",
                    page.as_uri()], capture_output=True, timeout=120)
    assert (tmp_path / "curation.png").stat().st_size > 10_000
