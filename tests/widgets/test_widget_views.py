"""The anywidget views: traits follow their models (throttled, from any thread), Stop reaches the job, ESM is offline."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time

import dspy
import pytest

from compound import jobs
from compound.optimize.job import OptimizationJob
from compound.widgets import (
    Column,
    JobWidget,
    LineChart,
    LineChartWidget,
    OptimizationView,
    Progress,
    ProgressWidget,
    Table,
    TableWidget,
    show,
)
from compound.widgets import _live, _view


def wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.01)


def test_progress_widget_follows_its_model():
    bar = Progress(total=4, description="demos")
    widget = ProgressWidget(bar)
    assert (widget.value, widget.total, widget.description, widget.status) == (0.0, 4.0, "demos", "running")
    bar.advance(3)
    wait_for(lambda: widget.value == 3.0)
    bar.finish()
    wait_for(lambda: widget.status == "done")
    assert widget.value == 4.0 and widget.ended_at is not None


def test_updates_from_worker_threads_are_coalesced():
    chart = LineChart(title="score")
    widget = LineChartWidget(chart)
    sends = []
    widget.observe(lambda change: sends.append(len(change["new"][0]["points"]) if change["new"] else 0), names=["series"])

    def burst():
        for i in range(400):
            chart.add_point("score", i, i / 400)

    workers = [threading.Thread(target=burst) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wait_for(lambda: widget.series and len(widget.series[0]["points"]) == chart.max_points)
    # 1600 model changes reached the frontend as a handful of trait updates, the last one complete.
    assert len(sends) <= 1600 * _view.FLUSH_INTERVAL_S + 5, len(sends)
    assert widget.series[0]["points"][-1][0] == 399.0


def test_table_widget_sorting_round_trips_to_the_model():
    table = Table([Column("trial"), Column("score", format=".3f")])
    table.add_row({"trial": 1, "score": 0.2})
    table.add_row({"trial": 2, "score": 0.9})
    widget = TableWidget(table)
    assert widget.columns == [{"key": "trial", "label": "trial", "format": ""},
                              {"key": "score", "label": "score", "format": ".3f"}]
    # what a header click in the browser does: set the traits
    widget.sort_by, widget.descending = "score", True
    assert table.sort_by == "score" and table.descending
    assert [r["trial"] for r in table.sorted_rows()] == [2, 1]
    table.add_row({"trial": 3, "score": 0.5})
    wait_for(lambda: len(widget.rows) == 3)
    assert widget.sort_by == "score"  # the model's sort state, not reset by updates


def test_stop_button_message_stops_the_job():
    def work(job):
        while not job.stop_requested:
            time.sleep(0.01)
        return "kept"

    job = jobs.start(work, name="waits for stop", kind="test")
    widget = JobWidget(job)
    assert widget.status == "running" and widget.kind == "test" and widget.name == "waits for stop"
    widget._handle_custom_msg({"type": "stop"}, [])  # what the frontend's Stop click sends
    assert job.result(timeout=5) == "kept"
    wait_for(lambda: widget.status == "cancelled")
    assert widget.ended_at is not None
    widget._handle_custom_msg({"type": "something else"}, [])  # ignored


def test_job_widget_shows_failure():
    def fail(job):
        raise RuntimeError("no model loaded")

    job = jobs.start(fail, name="fails")
    widget = JobWidget(job)
    job.wait(5)
    wait_for(lambda: widget.status == "failed")
    assert widget.error == "RuntimeError: no model loaded"


def _unstarted_optimization_job():
    program = dspy.Predict("question -> answer")
    trainset = [dspy.Example(question="q", answer="a").with_inputs("question")]
    optimizer = dspy.BootstrapFewShot(metric=lambda example, pred, trace=None: 1.0)
    return OptimizationJob(program, trainset, optimizer, compile_kwargs={})


def test_optimization_view_composes_the_kit():
    job = _unstarted_optimization_job()
    view = OptimizationView(job)
    # anywidget's add_traits() gives each instance a subclass of its widget class
    assert [isinstance(part, kind) for part, kind in zip(view.children, [JobWidget, LineChartWidget, TableWidget])] == [True] * 3
    assert "compound-optimization" in view._dom_classes
    job._record_trial(kind="full", candidate="0 demos", score=0.25, n=4, program=job.program)
    job._record_trial(kind="full", candidate="1 demo", score=0.75, n=4)
    job._count_lm_call(failed=False)
    view.flush()
    header, chart, table = view.children
    assert dict(header.stats) == {"optimizer": "BootstrapFewShot", "trials": "2", "best score": "0.750", "LM calls": "1"}
    assert [r["best"] for r in table.rows] == [0.25, 0.75]
    assert [s["name"] for s in chart.series] == ["score", "best so far"]
    assert isinstance(show(job), OptimizationView)


def test_rich_repr_carries_the_widget_only_in_a_kernel(monkeypatch):
    table = Table(["a"])
    assert "application/vnd.jupyter.widget-view+json" not in table._repr_mimebundle_()
    monkeypatch.setattr(_live, "in_kernel", lambda: True)
    bundle = table._repr_mimebundle_()
    assert {"text/plain", "text/html", "application/vnd.jupyter.widget-view+json"} <= set(bundle)
    job = _unstarted_optimization_job()
    assert "application/vnd.jupyter.widget-view+json" in job._repr_mimebundle_()
    job._shown = True  # cp.optimize already displayed the live view
    assert set(job._repr_mimebundle_()) == {"text/plain", "text/html"}


def test_show_rejects_other_objects():
    with pytest.raises(TypeError, match="no widget shows a dict"):
        show({})


WIDGETS = [ProgressWidget, LineChartWidget, TableWidget, JobWidget]


@pytest.mark.parametrize("widget", WIDGETS, ids=lambda w: w.__name__)
def test_esm_is_self_contained(widget):
    source = widget._esm if isinstance(widget._esm, str) else str(widget._esm)
    imports = re.findall(r"^\s*import .*$", source, flags=re.MULTILINE)
    assert imports == [], imports  # _dom.js is inlined; nothing is fetched (no CDN), so it works offline
    assert "export default { render }" in source
    assert "http://" not in source.replace("http://www.w3.org/2000/svg", "") and "https://" not in source


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@pytest.mark.parametrize("widget", WIDGETS, ids=lambda w: w.__name__)
def test_esm_parses_as_an_es_module(widget, tmp_path):
    path = tmp_path / f"{widget.__name__}.mjs"
    path.write_text(widget._esm)
    subprocess.run(["node", "--check", str(path)], check=True, capture_output=True, text=True)
