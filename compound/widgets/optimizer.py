"""`OptimizationView`: the live view of a `cp.optimize` run, composed from the kit.

Top to bottom: a `JobWidget` (name, status, progress, elapsed, optimizer, trials, start and best score, LM calls and
the Stop button), a `LineChartWidget` of validation scores and best-so-far per trial (bootstrap and minibatch scores
as series of their own), a sortable `TableWidget` of trials whose rows can be clicked, and a `TrialDiffWidget` with
the clicked trial's instructions and demos diffed against the starting program.

Example:
    >>> import dspy, compound as cp
    >>> triage = cp.zoo.tasks["triage"]
    >>> dspy.configure(adapter=cp.CompactAdapter())
    >>> program = dspy.Predict(triage.signature)
    >>> program.lm = cp.zoo.lm("tiny")
    >>> job = cp.optimize(program, triage.train[:8], "LabeledFewShot", metric=triage.metric,
    ...                   valset=triage.dev[:10], k=2, display=False)
    >>> view = OptimizationView(job)   # what cp.optimize displays in a notebook; cp.widgets.show(job) makes another
    >>> job.wait()
    True
    >>> view.flush(); view.header.status, [row["kind"] for row in view.table.rows]
    ('done', ['baseline', 'result'])
    >>> view.table.selected = 1        # a click on trial 1's row: the diff below the table shows what it changed
    >>> len(view.diff.entries[0]["demos_added"])
    2
"""

from __future__ import annotations

from typing import Any

import ipywidgets

from compound.optimize.job import OptimizationJob
from compound.widgets.chart import LineChartWidget
from compound.widgets.job import JobWidget
from compound.widgets.table import TableWidget
from compound.widgets.trial_diff import TrialDiffWidget


class OptimizationView(ipywidgets.VBox):
    """A VBox (CSS class `compound-optimization`) holding the job header, score chart, trial table and trial diff."""

    def __init__(self, job: OptimizationJob, **kwargs: Any):
        if not isinstance(job, OptimizationJob):
            raise TypeError(f"OptimizationView shows a compound OptimizationJob, got {type(job).__name__}")
        self.job = job
        self.header = JobWidget(job)
        self.chart = LineChartWidget(job.curve)
        self.table = TableWidget(job.table, row_key="trial")
        self.diff = TrialDiffWidget(job)
        self.table.observe(lambda change: self.diff.show_trial(change["new"]), names=["selected"])
        super().__init__([self.header, self.chart, self.table, self.diff], **kwargs)
        self.add_class("compound-optimization")
        if self.comm is not None:  # the frontend closed the view: stop following the job
            self.comm.on_close(lambda _msg: self.close())

    @property
    def parts(self) -> tuple[Any, ...]:
        return (self.header, self.chart, self.table, self.diff)

    def flush(self) -> None:
        """Push every part's current state to the frontend now."""
        for part in (self.header, self.chart, self.table):
            part.flush()

    def close(self) -> None:
        for part in self.parts:
            part.close()
        super().close()

    @property
    def following(self) -> bool:
        return any(part.following for part in (self.header, self.chart, self.table))

    def __repr__(self) -> str:
        return f"OptimizationView({self.job.name!r})"  # stable: the text/plain fallback of the displayed view
