"""A job's output in a notebook: its live view (or refreshed text) while it runs, its record once it ends.

`compound.jobs.Job.display()` uses this; it is here, in the Jupyter layer, so that `compound.jobs` imports no IPython.
The live view itself comes from IPython's display formatter, where `compound.widgets` registers its views.

Example:
    >>> JobDisplay.show(object(), interval=1.0) is None   # outside a notebook kernel: nothing is shown
    True
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any

log = logging.getLogger(__name__)


class JobDisplay:
    """Keeps a job's notebook output current: refreshed while it runs (when not live), its record once it ends."""

    @classmethod
    def show(cls, job: Any, *, interval: float) -> JobDisplay | None:
        """Display `job` under the running cell and follow it; None outside a notebook kernel."""
        ipython = sys.modules.get("IPython")
        shell = ipython.get_ipython() if ipython is not None else None
        if getattr(shell, "kernel", None) is None:
            return None
        from IPython.display import display  # inside an IPython kernel: it is loaded

        data, metadata = shell.display_formatter.format(job)
        live = any(key.startswith("application/vnd.jupyter.widget") for key in data)
        handle = display(data, metadata=metadata, raw=True, display_id=True)
        return cls(job, handle, refresh=None if live else interval)

    def __init__(self, job: Any, handle: Any, refresh: float | None):
        self.job, self.handle, self.refresh = job, handle, refresh
        self._last = 0.0
        self._ended = threading.Event()
        self._unwatch = job.watch(self._on_change)
        if job.done():
            self._on_change(job)

    def _on_change(self, job: Any) -> None:
        if job.done():
            if self._ended.is_set():
                return
            self._ended.set()
            self._unwatch()
            self.show_record()
        elif self.refresh is not None and time.monotonic() - self._last >= self.refresh:
            self._last = time.monotonic()
            self._show({"text/plain": repr(job), "text/html": job._repr_html_()})

    def show_record(self) -> None:
        """Replace the output with the job's record (text summary and static HTML)."""
        self._show({"text/plain": self.job.summary(), "text/html": self.job._repr_html_()})

    def _show(self, data: dict[str, str]) -> None:
        try:
            self.handle.update(data, raw=True)
        except Exception:  # the kernel is shutting down: nothing to show any more
            log.debug("updating the display of job %s failed", self.job.name, exc_info=True)
