"""The routing widget's ES module in a real (headless Chromium) browser, against the state Python sends it."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from test_report import routing_data

import compound as cp

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs chromium")

HARNESS = """
const state = window.STATE;
const handlers = {};
const model = {
  get: (key) => state[key],
  set: (key, value) => { state[key] = value; },
  save_changes: () => (handlers.change || []).forEach((f) => f()),
  on: (event, f) => { (handlers[event] ||= []).push(f); },
  off: () => {},
};
const errors = [];
try {
  const url = URL.createObjectURL(new Blob([window.ESM], { type: "text/javascript" }));
  const module = await import(url);
  module.default.render({ model, el: document.getElementById("view") });
  const slider = document.querySelector("input[type=range]");
  document.body.dataset.sliderMax = slider.max;
  slider.value = "0";                                   // drag to the cheapest point
  slider.dispatchEvent(new Event("input"));
  document.body.dataset.threshold = JSON.stringify(state.threshold);
} catch (error) {
  errors.push(String(error));
}
document.body.dataset.errors = JSON.stringify(errors);
"""


def test_routing_widget_renders_and_its_slider_sets_the_threshold(tmp_path):
    data = routing_data(200)
    train, test = data.split(test_size=0.5)
    view = cp.widgets.show(cp.route.evaluate({"knn": cp.route.KNNRouter(k=8).fit(train),
                                              "random_guess": cp.route.RandomRouter().fit(train)}, test))
    view.flush()
    state = {k: v for k, v in view.get_state().items() if not k.startswith("_") and k not in ("layout", "comm")}
    html = (f"<html><head><style>{view._css}</style></head><body><div id='view'></div>"
            f"<script>window.STATE = {json.dumps(state)}; window.ESM = {json.dumps(view._esm)};</script>"
            f'<script type="module">{HARNESS}</script></body></html>')
    page = tmp_path / "routing.html"
    page.write_text(html)
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000"]
    dom = subprocess.run([*command, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert 'data-errors="[]"' in dom
    assert f'data-slider-max="{len(view.thresholds) - 1}"' in dom
    written = float(dom.split('data-threshold="')[1].split('"')[0])
    assert written == view.thresholds[0]  # the slider wrote the cheapest point's threshold into the model
    shown = dom.split('id="view">')[1].split("<script>")[0]  # what render() built, not the state we handed it
    assert shown.count("<polyline") == 4 and "compound-routing-curve" in shown  # knn, random_guess, random, oracle
    assert "sent to dear" in shown and "prove the theorem" in shown and "cp.Routed(program.module, knn_router" in shown
    assert shown.count("<option") == 2  # two routers: the picker shows
    subprocess.run([*command, "--window-size=800,700", f"--screenshot={tmp_path / 'routing.png'}", page.as_uri()],
                   capture_output=True, timeout=120)
    assert (tmp_path / "routing.png").stat().st_size > 10_000
