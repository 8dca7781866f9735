"""A run's log lines belong to the run: records its threads log go to the job's own log, not to later cells.

DSPy's and optuna's loggers print to stderr from whichever thread logs. In a notebook that is the output of the
cell running at that moment, not the cell that started the run. While a run lasts, `JobLogCapture` filters the
handlers of those loggers: a record from one of the run's threads (its thread, and every DSPy worker thread, which
inherits the run's `dspy.context`) goes to `job.log` instead. Other records pass untouched.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from dspy.dsp.utils.settings import thread_local_overrides

CAPTURED_LOGGERS = ("dspy", "optuna", "gepa")
JOB_KEY = "compound_job"  # the dspy.context key that marks the run's threads


class JobLogCapture(logging.Filter):
    """Context manager: while active, log records from `job`'s threads land in `job.log` (the last `keep` lines)."""

    def __init__(self, job: Any, keep: int = 500):
        super().__init__()
        self.job = job
        self.log: deque[str] = deque(maxlen=keep)
        self._formatter = logging.Formatter("%(levelname)s %(name)s: %(message)s")
        self._handlers: list[logging.Handler] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if thread_local_overrides.get().get(JOB_KEY) is not self.job:
            return True
        try:
            self.log.append(self._formatter.format(record))
        except Exception:  # a record that cannot be formatted is dropped, not raised into the optimizer
            pass
        return False

    def __enter__(self) -> JobLogCapture:
        for name in CAPTURED_LOGGERS:
            for handler in logging.getLogger(name).handlers + logging.getLogger().handlers:
                if handler not in self._handlers:
                    handler.addFilter(self)
                    self._handlers.append(handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        for handler in self._handlers:
            handler.removeFilter(self)
        self._handlers = []
