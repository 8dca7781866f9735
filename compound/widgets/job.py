"""`JobWidget`: a background job's header: name, status, progress, elapsed clock, live stats and a Stop button.

The Stop button sends a one-off "stop" message. Jobs run on their own thread (`compound.jobs`), so the cell that
started one returns at once; a cell that then blocks on `job.result()` still gets the click, because compound's waits
handle the comm messages queued for the blocked shell (`compound.jupyter.pump`). Any `compound.jobs.Job` subclass
works (a fine-tuning job too); one with a `stats()` method shows those numbers as well.

Example:
    >>> from compound import jobs
    >>> from compound.widgets import JobWidget
    >>> job = jobs.start(lambda job: None, name="noop"); _ = job.wait(10)
    >>> JobWidget(job).status
    'done'
"""

from __future__ import annotations

from typing import Any

import traitlets

from compound import jobs
from compound.widgets._esm import css, esm
from compound.widgets._view import ModelView


class JobWidget(ModelView):
    """Follows one `compound.jobs.Job`; jobs with a `stats()` method (e.g. OptimizationJob) show those too."""

    _esm = esm("job.js")
    _css = css()

    job_id = traitlets.Unicode("").tag(sync=True)
    name = traitlets.Unicode("").tag(sync=True)
    kind = traitlets.Unicode("").tag(sync=True)
    status = traitlets.Unicode("running").tag(sync=True)
    progress = traitlets.Float(None, allow_none=True).tag(sync=True)
    detail = traitlets.Unicode("").tag(sync=True)
    started_at = traitlets.Float(0).tag(sync=True)
    ended_at = traitlets.Float(None, allow_none=True).tag(sync=True)
    stats = traitlets.List().tag(sync=True)  # [[label, value-as-text], ...], in display order
    error = traitlets.Unicode("").tag(sync=True)

    def __init__(self, job: jobs.Job, **kwargs: Any):
        if not isinstance(job, jobs.Job):
            raise TypeError(f"JobWidget shows a compound.jobs.Job, got {type(job).__name__}")
        super().__init__(job, **kwargs)
        self.on_msg(self._on_frontend_message)

    def _state(self, job: jobs.Job) -> dict[str, Any]:
        snap = job.snapshot()
        stats = job.stats() if hasattr(job, "stats") else {}
        return {
            "job_id": snap["id"],
            "name": snap["name"],
            "kind": snap["kind"],
            "status": snap["status"],
            "progress": snap["progress"],
            "detail": snap["detail"],
            "started_at": snap["started_at"] or 0.0,
            "ended_at": snap["ended_at"],
            "stats": [[label, value] for label, value in stats.items()],
            "error": "" if job.error is None else f"{type(job.error).__name__}: {job.error}",
        }

    def _on_frontend_message(self, _widget: Any, content: dict[str, Any], _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "stop":
            self.source.stop()
            self.flush()
