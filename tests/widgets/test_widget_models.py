"""The plain models behind the widgets: headless behaviour, text/HTML reprs, thread safety."""

from __future__ import annotations

import sys
import threading

import pytest

from compound.observe import Column, LineChart, Progress, Table


def test_progress_counts_and_prints():
    bar = Progress(total=8, description="bootstrap")
    for _ in range(2):
        bar.advance()
    assert bar.fraction == 0.25
    text = repr(bar)
    assert text.startswith("bootstrap: ██████░") and "2/8 (25%)" in text
    bar.finish("stopped")
    assert bar.status == "stopped" and "[stopped]" in repr(bar)
    frozen = bar.elapsed_s
    assert bar.elapsed_s == frozen  # the clock stops at finish
    with pytest.raises(ValueError, match="'done', 'failed' or 'stopped'"):
        bar.finish("paused")


def test_progress_without_total_is_indeterminate():
    bar = Progress(description="trials")
    bar.advance(3)
    assert bar.fraction is None and "trials: ···" in repr(bar) and " 3 " in repr(bar)
    bar.finish()
    assert bar.snapshot()["status"] == "done"


def test_line_chart_series_and_thinning():
    chart = LineChart(title="score", x_label="trial", y_label="score", max_points=50)
    for i in range(200):
        chart.add_point("score", i, i / 200)
        chart.add_point("best", i, 0.5)
    snap = chart.snapshot()
    assert [s["name"] for s in snap["series"]] == ["score", "best"]
    thinned = snap["series"][0]["points"]
    assert len(thinned) == 50 and thinned[0] == [0.0, 0.0] and thinned[-1] == [199.0, 0.995]
    assert chart.last("score") == (199.0, 0.995)
    assert "score: " in repr(chart) and "last=0.995" in repr(chart) and "(n=200)" in repr(chart)
    with pytest.raises(ValueError, match="finite number"):
        chart.add_point("score", 1, float("nan"))


def test_table_sorts_formats_and_prints():
    table = Table([Column("trial"), Column("score", "score", ".2f")], sort_by="score", descending=True)
    for trial, score in [(1, 0.5), (2, 0.75), (3, None), (4, 0.25)]:
        table.add_row({"trial": trial, "score": score})
    assert [r["trial"] for r in table.sorted_rows()] == [2, 1, 4, 3]  # rows without a score go last
    assert str(table).splitlines() == ["trial  score", "    2   0.75", "    1   0.50", "    4   0.25", "    3"]
    html = table._repr_html_()
    assert html.startswith('<table class="compound-table">') and "<td>0.75</td>" in html
    with pytest.raises(ValueError, match=r"keys \['loss'\] that are not columns"):
        table.add_row({"trial": 5, "loss": 1.0})
    with pytest.raises(ValueError, match="`sort_by` must be one of"):
        Table(["trial"], sort_by="score")
    with pytest.raises(ValueError, match="at least one column"):
        Table([])


def test_table_text_repr_shows_the_last_rows():
    table = Table(["i"], text_rows=3)
    for i in range(10):
        table.add_row({"i": i})
    assert str(table).splitlines() == ["i", "... 7 earlier rows", "7", "8", "9"]


def test_models_take_updates_from_many_threads():
    table, chart, bar = Table(["thread", "i"]), LineChart(), Progress(total=800)
    seen = []
    table.watch(lambda model: seen.append(model.version))

    def work(thread: int) -> None:
        for i in range(100):
            table.add_row({"thread": thread, "i": i})
            chart.add_point(f"t{thread}", i, i)
            bar.advance()

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(table.rows) == 800 and bar.value == 800 and bar.fraction == 1.0
    assert sum(len(points) for points in chart.series.values()) == 800
    assert len(seen) == 800 and table.version == 800


def test_watch_and_unwatch():
    bar, calls = Progress(total=2), []
    unwatch = bar.watch(calls.append)
    bar.advance()
    unwatch()
    bar.advance()
    assert calls == [bar]


def test_models_render_as_static_html_and_an_inline_svg_chart():
    table = Table(["a"])
    assert not hasattr(table, "_repr_mimebundle_")  # views come from compound.widgets' registry, not the model
    assert table._repr_html_().startswith('<table class="compound-table">')
    chart = LineChart(title="score")
    assert "no points yet" in chart._repr_html_()
    chart.add_point("score", 1, 0.5)
    chart.add_point("score", 2, 0.75)
    chart.add_point("best", 2, 0.75)
    svg = chart._repr_html_()
    assert svg.count("<polyline") == 2 and 'data-series="score"' in svg and "<script" not in svg


def test_models_and_optimize_import_no_widget_library():
    import subprocess

    # dspy itself imports IPython, so only the widget libraries are checked after importing compound.optimize.
    code = (
        "import sys, compound.observe, compound.jobs;"
        "bad = [m for m in ('anywidget', 'ipywidgets', 'IPython', 'traitlets') if m in sys.modules];"
        "assert not bad, bad;"
        "import compound.optimize;"
        "bad = [m for m in ('anywidget', 'ipywidgets') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
