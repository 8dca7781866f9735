"""`ProgressWidget`: a notebook progress bar over a `compound.widgets.Progress`.

Example:
    >>> from compound.widgets import Progress, ProgressWidget
    >>> bar = Progress(total=10, description="examples")
    >>> ProgressWidget(bar).total
    10.0
"""

from __future__ import annotations

from typing import Any

import traitlets

from compound.widgets._esm import css, esm
from compound.widgets._view import ModelView
from compound.observe import Progress


class ProgressWidget(ModelView):
    """A bar, a count and a ticking clock that follow a `Progress` model (the clock ticks in the browser)."""

    _esm = esm("progress.js")
    _css = css()

    value = traitlets.Float(0).tag(sync=True)
    total = traitlets.Float(None, allow_none=True).tag(sync=True)
    description = traitlets.Unicode("").tag(sync=True)
    status = traitlets.Unicode("running").tag(sync=True)
    started_at = traitlets.Float(0).tag(sync=True)  # epoch seconds
    ended_at = traitlets.Float(None, allow_none=True).tag(sync=True)

    def __init__(self, progress: Progress, **kwargs: Any):
        if not isinstance(progress, Progress):
            raise TypeError(f"ProgressWidget shows a compound.widgets.Progress, got {type(progress).__name__}")
        super().__init__(progress, **kwargs)

    def _state(self, progress: Progress) -> dict[str, Any]:
        snap = progress.snapshot()
        total = snap["total"]
        return {**snap, "value": float(snap["value"]), "total": None if total is None else float(total)}
