"""`LineChartWidget`: a live SVG line chart over a `compound.widgets.LineChart`.

Example:
    >>> from compound.widgets import LineChart, LineChartWidget
    >>> chart = LineChart(title="score", x_label="trial", y_label="score")
    >>> chart.add_point("score", 1, 0.5)
    >>> LineChartWidget(chart).series
    [{'name': 'score', 'points': [[1.0, 0.5]]}]
"""

from __future__ import annotations

from typing import Any

import traitlets

from compound.widgets._esm import css, esm
from compound.widgets._view import ModelView
from compound.observe import LineChart


class LineChartWidget(ModelView):
    """One polyline per named series, axes with min/max ticks and a legend; redraws as points arrive."""

    _esm = esm("chart.js")
    _css = css()

    title = traitlets.Unicode("").tag(sync=True)
    x_label = traitlets.Unicode("x").tag(sync=True)
    y_label = traitlets.Unicode("y").tag(sync=True)
    # [{"name": str, "points": [[x, y], ...]}, ...], already thinned to LineChart.max_points per series
    series = traitlets.List().tag(sync=True)

    def __init__(self, chart: LineChart, **kwargs: Any):
        if not isinstance(chart, LineChart):
            raise TypeError(f"LineChartWidget shows a compound.widgets.LineChart, got {type(chart).__name__}")
        super().__init__(chart, **kwargs)

    def _state(self, chart: LineChart) -> dict[str, Any]:
        return chart.snapshot()
