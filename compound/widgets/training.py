"""`TrainingView`: the live view of a `cp.finetune` run, composed from the kit.

Top to bottom: a `JobWidget` (name, status, progress, step, epoch, train loss, best dev score, tokens/s, ETA, memory
and the Stop button), the train-loss and dev-score `LineChartWidget`s side by side, and a `TableWidget` with one row
per dev evaluation.

Example:
    >>> import compound as cp
    >>> from compound.testing import reverse_chats, tiny_served_lm
    >>> job = cp.finetune(tiny_served_lm("doc-view"), reverse_chats(), name="reverse-v1", max_steps=2, display=False)
    >>> lm = job.result()
    >>> TrainingView(job)   # what a notebook shows for the job (cp.widgets.VIEWS)
    TrainingView('finetune reverse-v1')
"""

from __future__ import annotations

from typing import Any

import ipywidgets

from compound.widgets.chart import LineChartWidget
from compound.widgets.job import JobWidget
from compound.widgets.table import TableWidget


class TrainingView(ipywidgets.VBox):
    """A VBox (CSS class `compound-training`): job header, loss and dev charts, evaluation table."""

    def __init__(self, job: Any, **kwargs: Any):
        from compound.tune.job import FinetuneJob

        if not isinstance(job, FinetuneJob):
            raise TypeError(f"TrainingView shows a compound FinetuneJob, got {type(job).__name__}")
        self.job = job
        self.header = JobWidget(job)
        self.loss = LineChartWidget(job.loss)
        self.dev = LineChartWidget(job.dev)
        self.table = TableWidget(job.evals)
        super().__init__([self.header, ipywidgets.HBox([self.loss, self.dev]), self.table], **kwargs)
        self.add_class("compound-training")
        if self.comm is not None:  # the frontend closed the view: stop following the job
            self.comm.on_close(lambda _msg: self.close())

    @property
    def parts(self) -> tuple:
        return self.header, self.loss, self.dev, self.table

    def flush(self) -> None:
        """Push every part's current state to the frontend now."""
        for part in self.parts:
            part.flush()

    def close(self) -> None:
        for part in self.parts:
            part.close()
        super().close()

    @property
    def following(self) -> bool:
        return any(part.following for part in self.parts)

    def __repr__(self) -> str:
        return f"TrainingView({self.job.name!r})"  # stable: the text/plain fallback of the displayed view
