"""The routing report: metrics beside random and oracle, threshold calibration, text/HTML records and the widget."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import compound as cp
from compound.route import metrics


def routing_data(n=200, seed=0):
    """Queries of two kinds, as text: the cheap model fails the 'hard' kind, the dear one is right 90% of the time."""
    rng = np.random.default_rng(seed)
    hard = rng.uniform(size=n) < 0.5
    queries = [f"{'prove the theorem' if h else 'say hello'} number {i}" for i, h in enumerate(hard)]
    cheap = np.where(hard, rng.uniform(size=n) < 0.1, rng.uniform(size=n) < 0.95).astype(float)
    dear = (rng.uniform(size=n) < 0.9).astype(float)
    frame = pd.DataFrame({"example": np.repeat(range(n), 2), "model": ["cheap", "dear"] * n,
                          "query": np.repeat(queries, 2), "score": np.column_stack([cheap, dear]).ravel()})
    return cp.route.RoutingData(frame, ["cheap", "dear"], cost={"cheap": 1.0, "dear": 5.0})


@pytest.fixture(scope="module")
def report():
    data = routing_data(400)
    train, test = data.split(test_size=0.5, seed=0)
    knn = cp.route.KNNRouter(k=8).fit(train)
    return cp.route.evaluate({"knn": knn, "random_guess": cp.route.RandomRouter().fit(train)}, test,
                             program="program.answer")


def test_metrics_match_the_definitions_on_the_curves(report):
    weak, strong = report.model_quality
    for name, curve in report.curves.items():
        m = report.metrics[name]
        assert m["apgr"] == pytest.approx(metrics.apgr(curve.x, curve.quality, weak, strong))
        assert m["cpt50"] == pytest.approx(metrics.cpt(curve.x, curve.quality, weak, strong, 0.5))
        assert m["aiq"] == pytest.approx(metrics.aiq(curve.x, curve.quality))
    assert report.metrics["random"]["apgr"] == pytest.approx(0.5)
    assert report.metrics["random"]["cpt50"] == pytest.approx(0.5) and report.metrics["random"]["cpt80"] == pytest.approx(0.8)
    assert report.metrics["oracle"]["apgr"] > report.metrics["knn"]["apgr"] > 0.7 > report.metrics["random_guess"]["apgr"]
    assert report.metrics["knn"]["cpt80"] < 0.6  # the hard half goes to the dear model first


def test_threshold_for_quality_and_cost(report):
    t = report.threshold_for(quality=0.95)
    point = report.point(t)
    assert point["quality"] >= 0.95 * report.model_quality[report.best] - 1e-12
    cheaper = [p for p in (report.curves["knn"].point(i) for i in range(len(report.curves["knn"].x)))
               if p["cost"] < point["cost"] - 1e-12]
    assert all(p["quality"] < 0.95 * report.model_quality[report.best] for p in cheaper)  # the least cost that does it
    budget = report.threshold_for(cost=0.5)
    assert report.point(budget)["cost"] <= 0.5 * report.model_cost[report.best] + 1e-12
    saved = report.cost_saved(0.95, "knn")
    assert saved == pytest.approx(1 - point["cost"] / report.model_cost[report.best]) and saved > 0.3
    with pytest.raises(ValueError, match="exactly one"):
        report.threshold_for()
    with pytest.raises(ValueError, match="never reaches"):
        report.threshold_for(quality=1.5)
    with pytest.raises(ValueError, match="no curve named"):
        report.threshold_for(quality=0.9, router="nope")


def test_the_point_reports_shares_samples_and_the_code_line(report):
    report.select(threshold=report.threshold_for(quality=0.95), router="knn")
    point = report.point()
    assert sum(point["shares"]) == pytest.approx(1.0) and 0 < point["shares"][1] < 1
    assert all(q.startswith("prove") for q in point["samples"]["dear"])   # the hard kind goes to the dear model
    assert point["code"] == f"cp.Routed(program.answer, knn_router, candidates, threshold={point['threshold']:.3f})"
    seen = []
    unwatch = report.watch(lambda r: seen.append(r.threshold))
    report.select(threshold=0.0)
    unwatch()
    assert seen == [0.0]


def test_text_and_static_html_record(report):
    text = repr(report)
    assert text.splitlines()[0] == "RoutingReport: 200 examples, 2 models; cost: user cost per call"
    for name in ("knn", "random_guess", "random", "oracle", "APGR", "CPT(50%)", "AIQ", "deferral AUC"):
        assert name in text
    html = report._repr_html_()
    assert html.count("<polyline") == len(report.curves) and "<svg" in html and "cp.Routed(program.answer" in html
    from compound.widgets import view_class
    from compound.widgets.routing import RoutingWidget

    assert view_class(report) is RoutingWidget  # what a kernel's display formatter shows live


def test_the_widget_moves_the_point_and_shows_what_the_report_says(report):
    from compound.widgets.routing import RoutingWidget

    view = cp.widgets.show(report)
    assert view.routers == ["knn", "random_guess"] and view.svg == report.svg()
    cheapest, dearest = view.thresholds[0], view.thresholds[-1]
    view.threshold = cheapest   # what the slider does
    assert report.threshold == cheapest and view.shares[1]["share"] < 0.05
    view.threshold = dearest
    assert report.threshold == dearest and view.summary == report.point_line()
    assert view.shares[1]["share"] > 0.95 and f"threshold={dearest:.3f}" in view.code
    view.router = "random_guess"
    assert report.router == "random_guess" and view.thresholds == report.curves["random_guess"].thresholds.tolist()
    assert repr(view) == "RoutingWidget('RoutingReport')"
    with pytest.raises(TypeError, match="RoutingReport"):
        RoutingWidget(object())


def test_cascades_pay_for_what_they_tried_and_get_a_deferral_auc():
    data = routing_data(300, seed=1)
    frame = data.frame.copy()
    # confidence: the cheap model is unsure exactly where it is wrong, plus noise
    rng = np.random.default_rng(0)
    frame["conf_agreement"] = np.clip(frame["score"] * 0.8 + rng.uniform(0, 0.3, len(frame)), 0, 1)
    data = cp.route.RoutingData(frame, data.models, cost={"cheap": 1.0, "dear": 5.0},
                                meta={"confidence": ["agreement"], "samples": 0})
    cascade = cp.route.CascadeRouter(confidence="agreement").fit(data)
    report = cp.route.evaluate(cascade, data)
    curve = report.curves["cascade"]
    assert curve.cost.max() == pytest.approx(6.0)          # everything deferred: paid for both models
    assert curve.cost.min() == pytest.approx(1.0) and curve.deferral.min() == 0 and curve.deferral.max() == 1
    assert report.metrics["cascade"]["deferral_auc"] > report.metrics["random"]["deferral_auc"]
    assert report.metrics["cascade"]["apgr"] > 0.7


def test_evaluate_checks_its_inputs():
    data = routing_data(20)
    with pytest.raises(ValueError, match="not fitted"):
        cp.route.evaluate(cp.route.KNNRouter(), data)
    other = cp.route.KNNRouter(k=1).fit(np.eye(2), np.eye(2), models=["x", "y"])
    with pytest.raises(ValueError, match="same candidates"):
        cp.route.evaluate(other, data)
    with pytest.raises(TypeError, match="RoutingData"):
        cp.route.evaluate(other, data.frame)
