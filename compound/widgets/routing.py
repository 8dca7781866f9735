"""`RoutingWidget`: a threshold slider over a `cp.route.RoutingReport`, with the live point on the cost–quality curve.

The report (a plain model) does all the work: the slider only sets `threshold` (or `router`), the report moves its
current point, and the view copies back the chart (the report's own SVG), the numbers, each model's share of the
calls, sample queries per route and the code line that reproduces the choice.

Example:
    >>> import numpy as np, pandas as pd, compound as cp
    >>> frame = pd.DataFrame({"example": np.repeat(range(2), 2), "model": ["a", "b"] * 2,
    ...                       "query": np.repeat(["x", "y"], 2), "score": [1, 1, 0, 1]})
    >>> data = cp.route.RoutingData(frame, ["a", "b"], cost={"a": 1.0, "b": 2.0})
    >>> view = cp.widgets.show(cp.route.evaluate(cp.route.RandomRouter().fit(data), data))
    >>> view.router, len(view.thresholds) > 1, view.svg.startswith("<svg")
    ('random_router', True, True)
"""

from __future__ import annotations

from typing import Any

import traitlets

from compound.widgets._esm import css, esm
from compound.widgets._view import ModelView

ROUTING_CSS = """
.compound-routing { font-family: var(--jp-ui-font-family, sans-serif); font-size: 12px; max-width: 760px; }
.compound-routing-controls { display: flex; gap: 10px; align-items: center; margin: 4px 0; }
.compound-routing-controls input[type=range] { flex: 1; }
.compound-routing-share { display: flex; align-items: center; gap: 6px; }
.compound-routing-bar { height: 8px; background: var(--jp-brand-color1, #1f77b4); border-radius: 2px; }
.compound-routing-samples { display: grid; grid-template-columns: repeat(auto-fit, minmax(220px, 1fr)); gap: 8px; }
.compound-routing-samples ul { margin: 2px 0; padding-left: 16px; color: var(--jp-ui-font-color2, #555); }
.compound-routing-code { background: var(--jp-layout-color2, #f4f4f4); padding: 4px 6px; }
"""


class RoutingWidget(ModelView):
    """Slider over the selected router's thresholds; everything shown comes from the report's current point."""

    _esm = esm("routing.js")
    _css = css() + ROUTING_CSS

    router = traitlets.Unicode("").tag(sync=True)
    routers = traitlets.List().tag(sync=True)
    thresholds = traitlets.List().tag(sync=True)  # the selected router's thresholds, cheapest point first
    threshold = traitlets.Float(0.0).tag(sync=True)
    svg = traitlets.Unicode("").tag(sync=True)
    summary = traitlets.Unicode("").tag(sync=True)
    shares = traitlets.List().tag(sync=True)  # [{"model", "share"}]
    samples = traitlets.Dict().tag(sync=True)  # {model: [query, ...]}
    code = traitlets.Unicode("").tag(sync=True)

    def __init__(self, report: Any, **kwargs: Any):
        from compound.route.report import RoutingReport

        if not isinstance(report, RoutingReport):
            raise TypeError(f"RoutingWidget shows a cp.route.RoutingReport, got {type(report).__name__}")
        super().__init__(report, **kwargs)
        self.observe(self._moved, names=["threshold", "router"])

    def _state(self, report: Any) -> dict[str, Any]:
        snap = report.snapshot()
        point = snap["point"]
        curve = next(c for c in snap["curves"] if c["name"] == snap["router"])
        return {
            "router": snap["router"],
            "routers": snap["routers"],
            "thresholds": curve["thresholds"],
            "threshold": report.threshold,  # the report's own value: setting it back never re-triggers `_moved`
            "svg": report.svg(),
            "summary": report.point_line(),
            "shares": [{"model": m, "share": s} for m, s in zip(report.data.models, point["shares"])],
            "samples": point["samples"],
            "code": point["code"],
        }

    def _moved(self, change: dict[str, Any]) -> None:
        # the browser moved the slider (or picked a router): move the report's point; the flush brings the rest
        report = self.source
        if change["name"] == "router" and self.router != report.router and self.router in report.curves:
            report.select(router=self.router)
        elif change["name"] == "threshold" and self.threshold != report.threshold:
            report.select(threshold=self.threshold)
        else:
            return
        self.flush()  # answer the slider now rather than at the next throttled flush
