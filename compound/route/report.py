"""`cp.route.evaluate(router, data) -> RoutingReport`: routers beside random and oracle on held-out RoutingData.

The report is a plain observable model (`compound.observe`): it prints as a text table, renders as static HTML with
an inline SVG cost–quality curve, and holds a current threshold that a view (`cp.widgets.show(report)`, or the report as a cell's value) moves.

Example:
    >>> import numpy as np, pandas as pd, compound as cp
    >>> frame = pd.DataFrame({"example": np.repeat(range(4), 2), "model": ["cheap", "dear"] * 4,
    ...                       "query": np.repeat(["a", "b", "c", "d"], 2), "score": [1, 1, 0, 1, 0, 1, 1, 1]})
    >>> data = cp.route.RoutingData(frame, ["cheap", "dear"], cost={"cheap": 1.0, "dear": 2.0})
    >>> report = cp.route.evaluate(cp.route.OracleRouter().fit(data), data)
    >>> report.metrics["oracle"]["cpt50"], round(report.metrics["random"]["apgr"], 6)
    (0.25, 0.5)
    >>> report.threshold_for(quality=1.0) > 0, report.point()["shares"]
    (True, [0.5, 0.5])
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from compound.observe import Observable
from compound.route.base import Router
from compound.route.cascade import CascadeRouter
from compound.route.curves import Curve, cascade_curve, oracle_curve, random_curve, scored_curve
from compound.route.data import RoutingData
from compound.route.plot import curve_svg

SAMPLES_PER_ROUTE = 3


def _router_name(router: Router) -> str:
    name = type(router).__name__.removesuffix("Router").lower() or "router"
    return f"{name}_router" if name in ("random", "oracle") else name  # the baselines' rows keep their names


def _columns(router: Router, data: RoutingData) -> list[int]:
    """Where each of the router's models sits in the data (the router may list them in another order)."""
    models = getattr(router, "models_", None)
    if models is None:
        raise ValueError(f"{type(router).__name__} is not fitted; call .fit(routing_data) before evaluating it")
    if sorted(models) == sorted(data.models):
        return [data.models.index(m) for m in models]
    if all(m == f"model_{j}" for j, m in enumerate(models)) and len(models) == len(data.models):
        return list(range(len(models)))  # fitted on bare arrays: same order assumed
    raise ValueError(f"the router was fitted on models {models}, the data has {data.models}; evaluate it on data "
                     "collected with the same candidates")


def router_curve(name: str, router: Router, data: RoutingData) -> Curve:
    """The curve `router` reaches on `data` (its scores or, for a cascade, its confidences, swept over thresholds)."""
    columns = _columns(router, data)
    Y, C = data.scores[:, columns], data.cost_matrix[:, columns]
    if isinstance(router, CascadeRouter):
        return cascade_curve(name, data.confidence(router.confidence)[:, columns], Y, C, router.costs_,
                             data.confidence_cost(router.confidence)[:, columns])
    curve = scored_curve(name, router.predict_scores(data.queries), Y, C, router.costs_)
    inverse = np.argsort(columns)  # back to the data's model order
    curve.shares = curve.shares[:, inverse]
    curve.choices = [np.asarray(columns)[c] for c in curve.choices]
    return curve


class RoutingReport(Observable):
    """Routers' cost–quality curves and metrics beside the random and oracle baselines, with a current threshold.

    `metrics[name]` holds APGR, CPT(50%), CPT(80%) (as a share of the cost range: two models, of strong calls),
    AIQ (over the cost range from the cheapest model alone to the dearest) and deferral AUC for every router,
    "random" and "oracle"; a metric a curve cannot have is None (APGR of a cascade that costs more than the cheapest
    model even when it never defers). `threshold_for(quality=0.95)` (a share of the best single model's quality) or
    `threshold_for(cost=0.5)` (a share of its cost) picks a threshold; `select()` moves the current point that the
    widget shows.
    """

    def __init__(self, curves: dict[str, Curve], data: RoutingData, routers: dict[str, Router],
                 program: str = "program.module"):
        super().__init__()
        self.curves, self.data, self.routers, self.program = curves, data, routers, program
        Y, C = data.scores, data.cost_matrix
        self.model_quality, self.model_cost = Y.mean(axis=0), C.mean(axis=0)
        self.weak, self.strong = int(np.argmin(self.model_cost)), int(np.argmax(self.model_cost))
        # the best model alone: highest quality, the cheaper one on a tie
        self.best = int(min(range(len(data.models)), key=lambda j: (-self.model_quality[j], self.model_cost[j])))
        weak_q, strong_q = self.model_quality[self.weak], self.model_quality[self.strong]
        # AIQ over the span of the single models' costs (RouterBench extends to the dearest point seen instead, so
        # one costly cascade would flatten every other router's AIQ toward its best quality)
        self.metrics = {name: c.metrics(weak_q, strong_q, x_max=1.0) for name, c in curves.items()}
        self.router = next(iter(routers), "oracle")
        self.threshold = self._default_threshold()

    # ---- choosing a threshold ----------------------------------------------------------------------------------
    def _curve(self, router: str | None) -> Curve:
        name = router or self.router
        if name not in self.curves:
            raise ValueError(f"no curve named {name!r}; the report has {list(self.curves)}")
        return self.curves[name]

    def _default_threshold(self) -> float:
        try:
            return self.threshold_for(quality=0.95)
        except ValueError:
            curve = self._curve(None)
            return float(curve.thresholds[int(np.argmax(curve.quality))])

    def threshold_for(self, *, quality: float | None = None, cost: float | None = None,
                      router: str | None = None) -> float:
        """The threshold reaching `quality` x the best model's quality at the least cost, or the best quality
        within `cost` x the best model's cost.

        Example:
            >>> import numpy as np, pandas as pd, compound as cp
            >>> frame = pd.DataFrame({"example": np.repeat(range(4), 2), "model": ["cheap", "dear"] * 4,
            ...                       "query": np.repeat(["a", "b", "c", "d"], 2), "score": [1, 1, 0, 1, 1, 1, 0, 1]})
            >>> data = cp.route.RoutingData(frame, ["cheap", "dear"], cost={"cheap": 1.0, "dear": 4.0})
            >>> report = cp.route.evaluate(cp.route.OracleRouter().fit(data), data)
            >>> report.point(report.threshold_for(quality=0.95))["cost_vs_best"]   # all of dear's quality for 62.5%
            0.625
            >>> report.point(report.threshold_for(cost=0.5))["quality"]           # the best quality at half its cost
            0.5
        """
        if (quality is None) == (cost is None):
            raise ValueError("pass exactly one of `quality=` (share of the best model's quality) or `cost=`")
        curve = self._curve(router)
        best_q, best_c = self.model_quality[self.best], self.model_cost[self.best]
        if quality is not None:
            ok = np.flatnonzero(curve.quality >= quality * best_q - 1e-12)
            if not len(ok):
                raise ValueError(f"{curve.name} never reaches {quality:.0%} of the best model's quality "
                                 f"({best_q:.3f}); its best is {curve.quality.max():.3f}")
            i = ok[np.argmin(curve.cost[ok])]
        else:
            ok = np.flatnonzero(curve.cost <= cost * best_c + 1e-12)
            if not len(ok):
                raise ValueError(f"{curve.name} costs at least {curve.cost.min() / best_c:.0%} of the best model; "
                                 f"cost={cost} is below that")
            i = ok[np.lexsort((curve.cost[ok], -curve.quality[ok]))[0]]
        return float(curve.thresholds[i])

    def cost_saved(self, quality: float = 0.95, router: str | None = None) -> float | None:
        """Share of the best model's cost saved while keeping `quality` x its quality (None if never reached)."""
        try:
            point = self._curve(router).at(self.threshold_for(quality=quality, router=router))
        except ValueError:
            return None
        return float(1.0 - point["cost"] / self.model_cost[self.best])

    def select(self, threshold: float | None = None, router: str | None = None) -> None:
        """Move the current point (what the widget and `point()` show)."""
        with self._lock:
            if router is not None:
                self._curve(router)
                self.router = router
            if threshold is not None:
                self.threshold = float(threshold)
            self._changed()

    def point(self, threshold: float | None = None, router: str | None = None) -> dict[str, Any]:
        """Numbers at a threshold: cost, quality, relative to the best model, share of calls and sample queries."""
        curve = self._curve(router)
        at = curve.at(self.threshold if threshold is None else threshold)
        best = self.data.models[self.best]
        best_q, best_c = float(self.model_quality[self.best]), float(self.model_cost[self.best])
        at["quality_vs_best"] = at["quality"] / best_q if best_q else None
        at["cost_vs_best"] = at["cost"] / best_c
        at["best"] = best
        queries = self.data.queries
        choice = curve.choices[at["index"]] if curve.choices else None
        at["samples"] = {m: ([queries[i] for i in np.flatnonzero(choice == j)[:SAMPLES_PER_ROUTE]]
                             if choice is not None else []) for j, m in enumerate(self.data.models)}
        at["code"] = (f"cp.Routed({self.program}, {curve.name}_router, candidates, threshold={at['threshold']:.3f})"
                      if curve.kind in ("router", "cascade") else "")
        return at

    # ---- views -------------------------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            curves = [{"name": c.name, "kind": c.kind, "points": np.column_stack([c.x, c.quality]).tolist(),
                       "thresholds": c.thresholds.tolist()} for c in self.curves.values()]
            x = (self.model_cost - self.model_cost[self.weak]) / ((self.model_cost[self.strong] -
                                                                   self.model_cost[self.weak]) or 1.0)
            return {"router": self.router, "routers": [n for n, c in self.curves.items() if c.kind in ("router",
                                                                                                       "cascade")],
                    "threshold": self.threshold, "curves": curves, "point": self.point(),
                    "models": [{"name": m, "x": float(x[j]), "quality": float(self.model_quality[j])}
                               for j, m in enumerate(self.data.models)],
                    "cost_unit": self.data.cost_unit}

    def _metric_rows(self) -> list[tuple[str, list[str]]]:
        def fmt(value, percent=False):
            return "—" if value is None else (f"{100 * value:.1f}%" if percent else f"{value:.3f}")

        rows = []
        for name, m in self.metrics.items():
            saved = self.cost_saved(0.95, name)
            rows.append((name, [fmt(m["apgr"]), fmt(m["cpt50"], True), fmt(m["cpt80"], True), fmt(m["aiq"]),
                                fmt(m["deferral_auc"]), fmt(saved, True)]))
        return rows

    HEADERS = ["APGR", "CPT(50%)", "CPT(80%)", "AIQ", "deferral AUC", "saved @95%"]

    def point_line(self) -> str:
        """One line about the current point: threshold, quality, cost, and each model's share of the calls."""
        p = self.point()
        shares = ", ".join(f"{m} {100 * s:.1f}%" for m, s in zip(self.data.models, p["shares"]))
        vs = "" if p["quality_vs_best"] is None else f" ({100 * p['quality_vs_best']:.1f}% of {p['best']})"
        return (f"at threshold {p['threshold']:.3f} ({self.router}): quality {100 * p['quality']:.1f}%{vs}, "
                f"cost {100 * p['cost_vs_best']:.1f}% of {p['best']}'s; calls: {shares}")

    def __repr__(self) -> str:
        d = self.data
        lines = [f"RoutingReport: {d.n_examples} examples, {len(d.models)} models; cost: {d.cost_unit}",
                 f"  {'model alone':24}{'quality':>9}{'cost':>12}"]
        for j, m in enumerate(d.models):
            lines.append(f"  {m:24}{100 * self.model_quality[j]:>8.1f}%{self.model_cost[j]:>12.3g}")
        lines.append(f"  {'':12}" + "".join(f"{h:>13}" for h in self.HEADERS))
        for name, cells in self._metric_rows():
            lines.append(f"  {name:12}" + "".join(f"{c:>13}" for c in cells))
        lines.append("  " + self.point_line())
        return "\n".join(lines)

    def svg(self) -> str:
        """The cost–quality chart (inline SVG): every curve, each model alone, and the current point."""
        snap = self.snapshot()
        return curve_svg(snap["curves"], snap["models"], snap["point"])

    def _repr_html_(self) -> str:
        snap = self.snapshot()
        esc = html.escape
        models = "".join(f"<tr><td>{esc(m)}</td><td>{100 * self.model_quality[j]:.1f}%</td>"
                         f"<td>{self.model_cost[j]:.3g}</td></tr>" for j, m in enumerate(self.data.models))
        head = "".join(f"<th>{esc(h)}</th>" for h in self.HEADERS)
        body = "".join(f"<tr><td>{esc(n)}</td>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>"
                       for n, cells in self._metric_rows())
        point = snap["point"]
        svg = curve_svg(snap["curves"], snap["models"], point)
        return (f'<div class="compound-routing-report"><b>RoutingReport</b>: {self.data.n_examples} examples, '
                f"cost: {esc(self.data.cost_unit)}<br>{svg}"
                f"<table><thead><tr><th>model alone</th><th>quality</th><th>cost</th></tr></thead>"
                f"<tbody>{models}</tbody></table><table><thead><tr><th></th>{head}</tr></thead><tbody>{body}"
                f"</tbody></table><p>{esc(self.point_line())}</p>"
                + (f"<pre>{esc(point['code'])}</pre>" if point["code"] else "") + "</div>")



def evaluate(routers, data: RoutingData, *, program: str = "program.module") -> RoutingReport:
    """Judge routers (one, a list, or a `{name: router}` dict) on held-out RoutingData beside random and oracle.

    `program` names the routed module in the code line the report shows (`cp.Routed(<program>, ...)`).

    Example:
        >>> import numpy as np, pandas as pd, compound as cp
        >>> frame = pd.DataFrame({"example": np.repeat(range(4), 2), "model": ["cheap", "dear"] * 4,
        ...                       "query": np.repeat(["say hi", "prove it", "say hello", "prove that"], 2),
        ...                       "score": [1, 1, 0, 1, 1, 1, 0, 1]})     # only "prove" queries need the dear model
        >>> data = cp.route.RoutingData(frame, ["cheap", "dear"], cost={"cheap": 1.0, "dear": 4.0})
        >>> knn = cp.route.KNNRouter(k=1, encoder="hashing").fit(data)
        >>> report = cp.route.evaluate({"knn": knn}, data)
        >>> report.metrics["knn"]["apgr"], round(report.metrics["random"]["apgr"], 6), report.cost_saved(0.95, "knn")
        (0.75, 0.5, 0.375)
    """
    if not isinstance(data, RoutingData):
        raise TypeError(f"`data` must be RoutingData (from cp.route.collect), got {type(data).__name__}")
    if data.n_examples == 0:
        raise ValueError("`data` has no examples to evaluate on")
    if isinstance(routers, Router):
        routers = [routers]
    if not isinstance(routers, dict):
        named: dict[str, Router] = {}
        for router in routers:
            name = base = _router_name(router)
            while name in named:
                name = f"{base}{len([n for n in named if n.startswith(base)]) + 1}"
            named[name] = router
        routers = named
    curves = {name: router_curve(name, router, data) for name, router in routers.items()}
    curves["random"] = random_curve(data.scores, data.cost_matrix)
    curves["oracle"] = oracle_curve(data.scores, data.cost_matrix)
    return RoutingReport(curves, data, {n: r for n, r in routers.items()}, program=program)
