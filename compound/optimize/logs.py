"""A run's output belongs to the run: what its threads log or print goes to the job's own log, not to later cells.

DSPy's and optuna's loggers print to stderr from whichever thread logs; in a notebook that is the output of the
cell running at that moment, not the cell that started the run. Optimizers also `print` and draw tqdm bars
(BootstrapFewShot's bar over the trainset and its "Bootstrapped ..." line), which land under the cell that started
the run, beside the job's own view that already shows that progress. While a run lasts, `JobLogCapture` takes
both: it filters the handlers of those loggers, and it routes writes to `sys.stdout`/`sys.stderr` by thread. A
record or a write from one of the run's threads (its thread, and every DSPy worker thread, which inherits the run's
`dspy.context`) goes to `job.log` instead; a progress bar leaves one line there, its last frame. Everything from
other threads passes untouched.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections import deque
from typing import Any

from dspy.dsp.utils.settings import thread_local_overrides

CAPTURED_LOGGERS = ("dspy", "optuna", "gepa")
JOB_KEY = "compound_job"  # the dspy.context key that marks the run's threads
_TERMINAL_CODES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # tqdm moves the cursor for nested bars


def running_job() -> Any:
    """The job whose run this thread belongs to, or None."""
    return thread_local_overrides.get().get(JOB_KEY)


class JobLogCapture(logging.Filter):
    """Context manager: while active, log records and console writes from `job`'s threads land in `job.log`
    (the last `keep` lines)."""

    def __init__(self, job: Any, keep: int = 500):
        super().__init__()
        self.job = job
        self.log: deque[str] = deque(maxlen=keep)
        self._formatter = logging.Formatter("%(levelname)s %(name)s: %(message)s")
        self._handlers: list[logging.Handler] = []
        self._pending = {"stdout": "", "stderr": ""}  # text written since the last newline, per stream
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if running_job() is not self.job:
            return True
        try:
            self.log.append(self._formatter.format(record))
        except Exception:  # a record that cannot be formatted is dropped, not raised into the optimizer
            pass
        return False

    def write(self, stream: str, text: str) -> None:
        """Take console text written by one of the run's threads: complete lines go to the log."""
        with self._lock:
            *lines, self._pending[stream] = (self._pending[stream] + text).split("\n")
            for line in lines:
                self._append_line(line)

    def _append_line(self, line: str) -> None:
        # A progress bar redraws itself after "\r": only the last frame of a line is what a terminal would show.
        line = _TERMINAL_CODES.sub("", line).rsplit("\r", 1)[-1].rstrip()
        if line:
            self.log.append(line)

    def __enter__(self) -> JobLogCapture:
        for name in CAPTURED_LOGGERS:
            for handler in logging.getLogger(name).handlers + logging.getLogger().handlers:
                if handler not in self._handlers:
                    handler.addFilter(self)
                    self._handlers.append(handler)
        _CONSOLE.attach(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        for handler in self._handlers:
            handler.removeFilter(self)
        self._handlers = []
        _CONSOLE.detach(self)
        with self._lock:
            for stream, text in self._pending.items():
                self._append_line(text)
                self._pending[stream] = ""


class _RoutedStream:
    """Stands in for `sys.stdout` or `sys.stderr` while runs last: a write from a run's thread goes to that run's
    log, any other write to the stream it replaced (a notebook cell's output, the console)."""

    def __init__(self, name: str, stream: Any, captures: dict[int, JobLogCapture]):
        self._name = name
        self._stream = stream
        self._captures = captures

    def write(self, text: str) -> int:
        capture = self._captures.get(id(running_job()))
        if capture is None:
            return self._stream.write(text)
        capture.write(self._name, text)
        return len(text)

    def flush(self) -> None:
        if id(running_job()) not in self._captures:
            self._stream.flush()

    def __getattr__(self, attribute: str) -> Any:  # encoding, isatty, fileno, ...: the replaced stream's
        return getattr(self._stream, attribute)


class _Console:
    """Installs the routed streams while at least one run is capturing, and puts the originals back after."""

    def __init__(self) -> None:
        self._captures: dict[int, JobLogCapture] = {}
        self._lock = threading.Lock()

    def attach(self, capture: JobLogCapture) -> None:
        with self._lock:
            for name in ("stdout", "stderr"):
                stream = getattr(sys, name)
                # Ours may still be installed: restored, after the last run ended, by whatever had replaced it.
                if not (isinstance(stream, _RoutedStream) and stream._captures is self._captures):
                    setattr(sys, name, _RoutedStream(name, stream, self._captures))
            self._captures[id(capture.job)] = capture

    def detach(self, capture: JobLogCapture) -> None:
        with self._lock:
            self._captures.pop(id(capture.job), None)
            if self._captures:
                return
            # Something that replaced a stream meanwhile (IPython's %%capture, pytest's capsys) restores ours
            # itself later; with no run capturing, ours only passes writes through.
            for name in ("stdout", "stderr"):
                stream = getattr(sys, name)
                if isinstance(stream, _RoutedStream):
                    setattr(sys, name, stream._stream)


_CONSOLE = _Console()
