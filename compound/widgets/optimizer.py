"""`OptimizationView`: the live view of a `cp.optimize` run, composed from the kit.

Top to bottom: a `JobWidget` (name, status, progress, elapsed, optimizer, trials, best score, LM calls and the
Stop button), a `LineChartWidget` of score and best-so-far per trial, and a sortable `TableWidget` of trials.

Example:
    >>> view = OptimizationView(job)   # what cp.optimize displays in a notebook  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import ipywidgets

from compound.widgets.chart import LineChartWidget
from compound.widgets.job import JobWidget
from compound.widgets.table import TableWidget


class OptimizationView(ipywidgets.VBox):
    """A VBox (CSS class `compound-optimization`) holding the job header, the score chart and the trial table."""

    def __init__(self, job: Any, **kwargs: Any):
        from compound.optimize.job import OptimizationJob

        if not isinstance(job, OptimizationJob):
            raise TypeError(f"OptimizationView shows a compound OptimizationJob, got {type(job).__name__}")
        self.job = job
        self.header = JobWidget(job)
        self.chart = LineChartWidget(job.curve)
        self.table = TableWidget(job.trials)
        super().__init__([self.header, self.chart, self.table], **kwargs)
        self.add_class("compound-optimization")

    def flush(self) -> None:
        """Push every part's current state to the frontend now."""
        for part in (self.header, self.chart, self.table):
            part.flush()

    def close(self) -> None:
        for part in (self.header, self.chart, self.table):
            part.close()
        super().close()

    def __repr__(self) -> str:
        return f"OptimizationView({self.job.name!r})"  # stable: the text/plain fallback of the displayed view
