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
from compound.widgets import VIEWS, _live, _view, register_view, view_class


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
    wait_for(lambda: widget.status == "stopped")
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
    job._record_trial(kind="baseline", candidate="0 demos", score=0.25, n=4, program=job.program)
    better = job.program.deepcopy()
    better.signature = better.signature.with_instructions("Answer with one word.")
    job._record_trial(kind="full", candidate="1 demo", score=0.75, n=4, program=better)
    job._record_trial(kind="bootstrap", candidate="trainset[0]", score=1.0, n=1)
    job._count_lm_call(failed=False)
    view.flush()
    header, chart, table, diff = view.children
    assert dict(header.stats) == {"optimizer": "BootstrapFewShot", "trials": "3", "best score": "0.750", "LM calls": "1"}
    assert [r["best"] for r in table.rows] == [0.25, 0.75, None]
    assert [s["name"] for s in chart.series] == ["validation score", "best so far", "bootstrap score"]
    # What a click on trial 1's row does: the diff shows its new instructions against the start.
    assert table.row_key == "trial" and diff.entries == []
    table.selected = 1
    assert diff.trial == 1 and diff.entries[0]["changed"]
    assert ["+", "Answer with one word."] in diff.entries[0]["instructions"]
    table.selected = 2  # a bootstrap row has no program: the view says so
    assert diff.entries == [] and "no program of its own" in diff.note
    shown = show(job)
    assert isinstance(shown, OptimizationView) and show(job) is shown  # one open view per object, reused
    shown.close()
    assert not shown.following and show(job) is not shown  # a closed view is replaced


def test_the_registry_gives_each_model_type_its_view_and_subclasses_inherit_it():
    class TrainingJob(jobs.Job):  # a capability's job with no view of its own
        def run(self):
            return None

    assert view_class(Progress()).__name__ == "ProgressWidget"
    assert view_class(TrainingJob("t")).__name__ == "JobWidget"
    assert view_class(_unstarted_optimization_job()).__name__ == "OptimizationView"
    register_view(f"{TrainingJob.__module__}.{TrainingJob.__qualname__}", "compound.widgets.progress:ProgressWidget")
    try:
        assert view_class(TrainingJob("t")).__name__ == "ProgressWidget"
    finally:
        VIEWS.pop(f"{TrainingJob.__module__}.{TrainingJob.__qualname__}")
    with pytest.raises(ValueError, match="module.ModelClass"):
        register_view("Table", "TableWidget")


def test_in_a_kernel_ipython_shows_the_live_view_beside_text_and_html(monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    table = Table(["a"])
    data, _ = shell.display_formatter.format(table)
    assert set(data) == {"text/plain", "text/html"}  # the control case: no formatter installed yet
    monkeypatch.setattr(_live, "in_kernel", lambda: True)
    monkeypatch.setattr(_live, "_kernel_shell", lambda: shell)
    assert _live.install_formatters()
    data, _ = shell.display_formatter.format(table)
    assert set(data) == {"text/plain", "text/html", "application/vnd.jupyter.widget-view+json"}
    assert data["text/plain"] == repr(table)  # the text fallback is the model's own, not the widget's
    job_data, _ = shell.display_formatter.format(_unstarted_optimization_job())
    assert "application/vnd.jupyter.widget-view+json" in job_data and "score per trial" in job_data["text/html"]
    monkeypatch.setattr(_live, "widgets_installed", lambda: False)  # a kernel without anywidget: text and HTML
    assert set(shell.display_formatter.format(Table(["b"]))[0]) == {"text/plain", "text/html"}


def test_views_detach_when_closed_and_jobs_get_no_process_wide_subscriber():
    bar = Progress(total=3)
    widget = ProgressWidget(bar)
    assert widget.following and len(bar._watchers) == 1
    widget.close()
    assert not widget.following and bar._watchers == ()
    subscribers = jobs._subscribers
    job = jobs.start(lambda job: job._stop.wait(5), name="watched by views")
    views = [JobWidget(job) for _ in range(5)]
    assert jobs._subscribers == subscribers and len(job._watchers) == 5
    views[0].comm.handle_close({"content": {"data": {}}})  # the frontend closed that view
    assert not views[0].following and len(job._watchers) == 4
    for view in views[1:]:
        view.close()
    assert job._watchers == ()
    job.stop()


def test_show_rejects_other_objects():
    with pytest.raises(TypeError, match="no widget shows a dict; compound.widgets.VIEWS has views for"):
        show({})


from compound.widgets.trial_diff import TrialDiffWidget  # noqa: E402

WIDGETS = [ProgressWidget, LineChartWidget, TableWidget, JobWidget, TrialDiffWidget]


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
