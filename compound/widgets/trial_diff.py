"""`TrialDiffWidget`: what one trial of a `cp.optimize` run changed, against the starting program.

Each predictor's instructions word by word (removed words struck through, added ones highlighted) and the demos it
added or dropped. `OptimizationView` shows the trial selected in its table; the diff itself is computed in Python
(`compound.optimize.diff`), the view only draws it.

Example:
    >>> import dspy, compound as cp
    >>> triage = cp.zoo.tasks["triage"]
    >>> dspy.configure(adapter=cp.CompactAdapter())
    >>> program = dspy.Predict(triage.signature)
    >>> program.lm = cp.zoo.lm("tiny")
    >>> job = cp.optimize(program, triage.train[:8], "LabeledFewShot", metric=triage.metric,
    ...                   valset=triage.dev[:10], k=2, display=False)
    >>> job.wait()
    True
    >>> widget = TrialDiffWidget(job)
    >>> widget.show_trial(1)
    >>> [(entry["predictor"], entry["changed"], len(entry["demos_added"])) for entry in widget.entries]
    [('self', False, 2)]
    >>> widget.show_trial(5); widget.note
    'there is no trial 5; trials with a program: [0, 1]'
"""

from __future__ import annotations

from typing import Any

import anywidget
import traitlets

from compound.optimize.diff import program_diff
from compound.widgets._esm import css, esm


class TrialDiffWidget(anywidget.AnyWidget):
    """The diff of the trial `show_trial(n)` picked; empty until a trial is picked."""

    _esm = esm("trial_diff.js")
    _css = css()

    trial = traitlets.Int(None, allow_none=True).tag(sync=True)
    # [{"predictor", "instructions": [[op, words], ...], "changed", "demos_added", "demos_removed", "demos"}]
    entries = traitlets.List().tag(sync=True)
    note = traitlets.Unicode("Click a trial in the table to see what it changed.").tag(sync=True)

    def __init__(self, job: Any, **kwargs: Any):
        super().__init__(**kwargs)
        self.job = job

    def show_trial(self, trial: int | None) -> None:
        """Show what trial `trial` changed (None clears the view)."""
        if trial is None:
            self.trial, self.entries = None, []
            return
        try:
            program = self.job.program_at(int(trial))
        except KeyError as exc:
            self.trial, self.entries, self.note = int(trial), [], str(exc.args[0] if exc.args else exc)
            return
        with self.hold_sync():
            self.entries = program_diff(self.job.program, program)
            self.trial = int(trial)
            self.note = ""

    def __repr__(self) -> str:
        return f"TrialDiffWidget({getattr(self.job, 'name', '')!r})"
