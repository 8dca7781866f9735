"""Background jobs: long work (optimization, training) that runs in a thread and can be watched and stopped.

A notebook cell that starts a job returns at once with a `Job` handle, so the kernel's shell channel stays free:
a widget's Stop button or the sidebar's Cancel then reaches the kernel while the job runs. Every job lives in a
process-wide registry that the sidebar reads (`list_jobs`) and follows (`subscribe`).

Example:
    >>> from compound import jobs
    >>> job = jobs.start(lambda job: sum(range(10)), name="sum")
    >>> job.result(timeout=10)
    45
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from compound.observe import Watchable

__all__ = ["Job", "JobStopped", "list_jobs", "start", "subscribe"]

logger = logging.getLogger(__name__)

STATUSES = ("running", "stopping", "done", "failed", "stopped")
_FINISHED = ("done", "failed", "stopped")
# A wait on the kernel's main thread wakes this often to handle queued widget messages (compound.jupyter.pump).
_POLL_S = 0.02
# How many finished jobs the registry remembers (the sidebar shows "recently finished").
_KEEP_FINISHED = 20
# Subscribers hear progress/detail changes at most this often per job; status changes are never delayed.
_NOTIFY_INTERVAL_S = 0.1

_registry_lock = threading.Lock()
_registry: dict[str, Job] = {}
_order = itertools.count()
_subscribers: tuple[Callable[[Job], None], ...] = ()


class JobStopped(Exception):
    """Raised by `Job.result()` when a job was stopped before it produced any result."""


class Job(Watchable):
    """A unit of background work with a status, a progress fraction and a graceful stop.

    Subclasses override `run()`; plain functions go through `compound.jobs.start(fn, name=...)`.
    `stop()` only asks: the work checks `stop_requested` at its safe points, ends early and keeps its best
    result so far. A job that ends after a stop request finishes as "stopped"; `result()` still returns
    what it kept. Interrupting the kernel (or Ctrl-C) while a cell waits in `result()` or `wait()` stops the job the
    same way. `watch(fn)` follows one job; `compound.jobs.subscribe` follows them all.

    Example:
        >>> class Count(Job):
        ...     def run(self):
        ...         for i in range(3):
        ...             self.update(progress=(i + 1) / 3)
        ...         return 3
        >>> Count("count", kind="demo").start().result(timeout=10)
        3
    """

    kind: str = "job"

    def __init__(self, name: str, *, kind: str | None = None):
        self.id = uuid.uuid4().hex[:12]
        self.name = name
        if kind is not None:
            self.kind = kind
        self.status = "running"
        self.progress: float | None = None
        self.detail = ""
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.error: BaseException | None = None
        self._result: Any = None
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._last_notify = 0.0
        self._notify_pending = False
        self._watchers: tuple[Callable[[Job], None], ...] = ()
        self._display: Any = None  # a compound.jupyter.display.JobDisplay once display() showed the job

    # -- the work ---------------------------------------------------------------------------------------------
    def run(self) -> Any:
        """The work itself, run on the job's thread; check `self.stop_requested` at safe points."""
        raise NotImplementedError(f"{type(self).__name__} must implement run(), or use compound.jobs.start(fn)")

    def start(self) -> Job:
        """Register the job and run it on a daemon thread; returns self."""
        if self._thread is not None:
            raise RuntimeError(f"job {self.name!r} was already started; create a new one to run again")
        self.started_at = time.time()
        with _registry_lock:
            _registry[self.id] = self
            self._order = next(_order)
            _forget_old_jobs()
        # The job runs in a copy of the caller's context: in a notebook, what it prints lands in the cell that started
        # it (ipykernel keeps each cell's output target in a context variable), never in whichever cell runs later.
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._main,), name=f"compound-job-{self.name}", daemon=True
        )
        _notify(self)  # before the work starts, so a subscriber can attach to the job before anything happens
        self._thread.start()
        return self

    def _main(self) -> None:
        try:
            self._result = self.run()
            status = "stopped" if self._stop.is_set() else "done"
        except BaseException as exc:  # the job thread must always end in a final status
            self.error = exc
            status = "failed"
            logger.debug("job %s failed", self.name, exc_info=True)
        with self._lock:
            self.ended_at = time.time()
            if status == "done" and self.progress is not None:
                self.progress = 1.0
            self.status = status
        # Watchers hear the end (a notebook output gets the job's record) before waiters in result() wake up.
        _notify(self)
        self._finished.set()

    # -- control ----------------------------------------------------------------------------------------------
    @property
    def stop_requested(self) -> bool:
        """True once `stop()` was called; the work should end at its next safe point."""
        return self._stop.is_set()

    def stop(self) -> None:
        """Ask the job to end at its next safe point, keeping its best result so far. Returns at once."""
        with self._lock:
            if self.done() or self._stop.is_set():
                return
            self._stop.set()
            self.status = "stopping"
        _notify(self)

    def done(self) -> bool:
        """Whether the job has ended (done, failed or stopped)."""
        return self.status in _FINISHED

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ends (or `timeout` seconds pass); returns whether it ended.

        In a notebook the wait keeps handling widget messages (a Stop click arrives), and interrupting the kernel
        stops the job and waits for it to wind down (interrupt again to stop waiting).
        """
        try:
            ended = self._wait_listening(timeout)
        except KeyboardInterrupt:
            self._stop_after_interrupt()
            ended = self._wait_listening(timeout)
        if ended and self._display is not None and threading.current_thread() is threading.main_thread():
            # Again from the waiting cell: notebook runners (nbconvert, nbval) only apply display updates that
            # arrive while some cell runs, and the job's own update came from its thread, after its cell had ended.
            self._display.show_record()
        return ended

    def result(self, timeout: float | None = None) -> Any:
        """Block until the job ends and return its result; re-raises the job's error.

        Raises `TimeoutError` if it is still running after `timeout` seconds. An interrupt while waiting stops the job
        and returns what it kept (its best result so far).
        """
        if not self.wait(timeout):
            raise TimeoutError(f"job {self.name!r} is still {self.status} after {timeout} s; call .stop() to end it")
        if self.error is not None:
            raise self.error
        return self._result

    def _wait_listening(self, timeout: float | None) -> bool:
        poll = _kernel_poller()
        if poll is None:  # a script, a test, or not the kernel's main thread: nothing to listen to
            return self._finished.wait(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._finished.is_set():
            poll()
            left = _POLL_S if deadline is None else min(_POLL_S, deadline - time.monotonic())
            if left <= 0:
                break
            self._finished.wait(left)
        return self._finished.is_set()

    def _stop_after_interrupt(self) -> None:
        if self.done():
            return
        self.stop()
        print(
            f"compound: interrupted; stopping job {self.name!r} at its next safe point (interrupt again to stop waiting)",
            file=sys.stderr,
        )

    # -- reporting --------------------------------------------------------------------------------------------
    # `watch(fn)` (from Watchable): fn(job) after each change of this job (status, progress, detail, live stats).
    # Like `subscribe`, callbacks run on the changing thread and must be cheap; their errors are logged.

    def _changed(self) -> None:
        """Tell this job's watchers (not the process-wide subscribers) that its live stats changed."""
        _call_all(self._watchers, self)

    def update(self, *, progress: float | None = None, detail: str | None = None) -> None:
        """Report progress (0..1) and/or a one-line detail; subscribers hear about it, throttled."""
        if progress is not None:
            self.progress = min(1.0, max(0.0, float(progress)))
        if detail is not None:
            self.detail = detail
        now = time.monotonic()
        with self._lock:
            if now - self._last_notify >= _NOTIFY_INTERVAL_S:
                self._last_notify = now
                send_now = True
            else:
                send_now = False
                if self._notify_pending:
                    return
                self._notify_pending = True
        if send_now:
            _notify(self)
        else:  # a trailing notification, so the last update is never lost
            timer = threading.Timer(_NOTIFY_INTERVAL_S, self._trailing_notify)
            timer.daemon = True
            timer.start()

    def _trailing_notify(self) -> None:
        with self._lock:
            self._notify_pending = False
            self._last_notify = time.monotonic()
        _notify(self)

    @property
    def elapsed_s(self) -> float:
        if self.started_at is None:
            return 0.0
        return (self.ended_at or time.time()) - self.started_at

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready dict: id, name, kind, status, progress, detail, started_at, ended_at, elapsed_s."""
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "status": self.status,
            "progress": self.progress,
            "detail": self.detail,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "elapsed_s": round(self.elapsed_s, 3),
        }

    # -- in a notebook ----------------------------------------------------------------------------------------
    def display(self, *, interval: float = 2.0) -> bool:
        """Show this job under the running notebook cell, and leave its record there when it ends.

        While it runs the output is its live widget (when `compound.widgets` has a view for it and anywidget is
        installed) or its text and HTML, refreshed every `interval` seconds. When it ends, finished, stopped or
        failed, the output becomes the job's static record (`_repr_html_` and `summary()`), which a saved notebook,
        GitHub, VS Code and nbval show without a kernel. Returns False (and shows nothing) outside a notebook kernel.

        Example:
            >>> start(lambda job: None, name="quiet").display()   # a script: nothing to show
            False
        """
        if "ipykernel" not in sys.modules:
            return False
        from compound.jupyter.display import JobDisplay

        self._display = JobDisplay.show(self, interval=interval)
        return self._display is not None

    def summary(self) -> str:
        """The job's record as text: what the output cell keeps when the job ends."""
        error = f"\n{type(self.error).__name__}: {self.error}" if self.error is not None else ""
        return f"{self!r}{error}"

    def _repr_html_(self) -> str:
        import html

        return f"<pre>{html.escape(self.summary())}</pre>"

    def __repr__(self) -> str:
        progress = "" if self.progress is None else f" {self.progress:.0%}"
        detail = f" · {self.detail}" if self.detail else ""
        kind = "Job" if type(self) is _FunctionJob else type(self).__name__  # start(fn) makes plain jobs
        return f"<{kind} {self.name!r} {self.status}{progress} {self.elapsed_s:.1f}s{detail}>"


class _FunctionJob(Job):
    def __init__(self, fn: Callable[[Job], Any], name: str, kind: str):
        super().__init__(name, kind=kind)
        self._fn = fn

    def run(self) -> Any:
        return self._fn(self)


def start(fn: Callable[[Job], Any], *, name: str, kind: str = "task") -> Job:
    """Run `fn(job)` on a background thread and return its `Job` at once.

    Example:
        >>> job = start(lambda job: "ok", name="hello")
        >>> job.result(timeout=10)
        'ok'
    """
    if not callable(fn):
        raise TypeError(f"`fn` must be a callable taking the Job, got {type(fn).__name__}")
    return _FunctionJob(fn, name, kind).start()


def list_jobs() -> list[Job]:
    """Running jobs and the most recently finished ones, oldest first."""
    with _registry_lock:
        return sorted(_registry.values(), key=lambda job: job._order)


def subscribe(callback: Callable[[Job], None]) -> Callable[[], None]:
    """Call `callback(job)` whenever a job starts, reports progress or changes status; returns an unsubscribe function.

    Callbacks run on whichever thread changed the job (often a worker thread), so they must be cheap and
    thread-safe; errors they raise are logged and ignored.

    Example:
        >>> import threading
        >>> finished = threading.Event()
        >>> unsubscribe = subscribe(lambda job: job.status == "done" and finished.set())
        >>> _ = start(lambda job: None, name="noop")
        >>> finished.wait(10)
        True
        >>> unsubscribe()
    """
    global _subscribers
    with _registry_lock:
        _subscribers = (*_subscribers, callback)

    def unsubscribe() -> None:
        global _subscribers
        with _registry_lock:
            _subscribers = tuple(cb for cb in _subscribers if cb is not callback)

    return unsubscribe


def _notify(job: Job) -> None:
    _call_all(job._watchers, job)
    _call_all(_subscribers, job)


def _call_all(callbacks: tuple[Callable[[Job], None], ...], job: Job) -> None:
    for callback in callbacks:
        try:
            callback(job)
        except Exception:
            logger.warning("job subscriber %r failed", callback, exc_info=True)


def _kernel_poller() -> Callable[[], int] | None:
    """compound.jupyter.pump.poll_kernel when this thread is a Jupyter kernel's main thread, else None."""
    if threading.current_thread() is not threading.main_thread() or "ipykernel" not in sys.modules:
        return None
    from compound.jupyter.pump import poll_kernel

    return poll_kernel


def _forget_old_jobs() -> None:
    finished = [job for job in _registry.values() if job.status in _FINISHED]
    finished.sort(key=lambda job: job._order)
    for job in finished[: max(0, len(finished) - _KEEP_FINISHED)]:
        del _registry[job.id]
