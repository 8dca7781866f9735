"""`cp.optimize`: run any DSPy optimizer in the background with a live view and a Stop button."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

import dspy
from dspy.teleprompt import Teleprompter

from compound.optimize.job import OptimizationJob
from compound.optimize.optimizers import build_optimizer

_DISPLAY_MODES = ("auto", "widget", "text", "none")


def optimize(
    program: dspy.Module,
    trainset: Sequence[dspy.Example],
    optimizer: str | Teleprompter = "BootstrapFewShot",
    metric: Callable[..., Any] | None = None,
    valset: Sequence[dspy.Example] | None = None,
    *,
    name: str | None = None,
    display: str | bool = "auto",
    **kwargs: Any,
) -> OptimizationJob:
    """Start optimizing `program` with a DSPy optimizer on a background thread; returns the job at once.

    `optimizer` is a DSPy optimizer instance or a name ("BootstrapFewShot", "MIPROv2", "GEPA", "COPRO", ...);
    `kwargs` go to its constructor or `compile()`, whichever takes them. In a notebook the live view (trial
    table, score curve, elapsed time, LM calls, Stop button) appears under the cell; elsewhere a text line is
    printed every few seconds. `job.stop()` (or Stop) ends the run at its next safe point, and `job.result()`
    returns the best program so far. Per-predictor LMs (`program.step.lm = ...`) survive the optimizer.

    Example:
        >>> job = cp.optimize(program, trainset, "MIPROv2", metric=exact_match, valset=dev, num_threads=4)  # doctest: +SKIP
        >>> better = job.result()        # or job.stop() first to end early and keep the best so far  # doctest: +SKIP
    """
    if not isinstance(program, dspy.Module):
        raise TypeError(f"`program` must be a dspy.Module (e.g. dspy.Predict('question -> answer')), got {type(program).__name__}")
    for label, examples in (("trainset", trainset), ("valset", valset)):
        if examples is None:
            continue
        if isinstance(examples, (str, bytes)) or not isinstance(examples, Sequence):
            raise TypeError(f"`{label}` must be a list of dspy.Example, got {type(examples).__name__}")
        bad = next((e for e in examples if not isinstance(e, dspy.Example)), None)
        if bad is not None:
            raise TypeError(
                f"`{label}` must hold dspy.Example objects with inputs marked, e.g. "
                f"dspy.Example(question=..., answer=...).with_inputs('question'); found {type(bad).__name__}"
            )
    if not trainset:
        raise ValueError("`trainset` is empty; the optimizer needs examples to learn from")
    mode = {True: "auto", False: "none", None: "none"}.get(display, display)
    if mode not in _DISPLAY_MODES:
        raise ValueError(f"`display` must be one of {_DISPLAY_MODES} or a bool, got {display!r}")
    instance, compile_kwargs = build_optimizer(optimizer, metric, kwargs)
    job = OptimizationJob(
        program, trainset, instance, compile_kwargs=compile_kwargs, valset=valset,
        metric=metric or getattr(instance, "metric", None), name=name,
    )
    job.quiet = mode != "none"
    job.start()
    _show(job, mode)
    return job


def _show(job: OptimizationJob, mode: str) -> None:
    if mode == "none":
        return
    from compound.widgets._live import in_kernel, widgets_installed

    kernel = in_kernel()
    if mode == "widget" or (mode == "auto" and kernel and widgets_installed()):
        from IPython.display import display

        from compound.widgets._live import view_for

        job._shown = True
        display(view_for(job))
    elif kernel:
        _NotebookText(job)
    else:
        TextReporter(job)


class TextReporter:
    """Prints one status line every `interval` seconds while the job runs, and a last one when it ends."""

    def __init__(self, job: OptimizationJob, interval: float = 5.0, stream: Any = None):
        self.job = job
        self.stream = stream or sys.stderr
        self.interval = interval
        threading.Thread(target=self._loop, name=f"compound-report-{job.name}", daemon=True).start()

    def _loop(self) -> None:
        while not self.job.wait(self.interval):
            print(repr(self.job), file=self.stream, flush=True)
        print(repr(self.job), file=self.stream, flush=True)


class _NotebookText:
    """In a kernel without anywidget: one text output under the cell, updated in place."""

    def __init__(self, job: OptimizationJob, interval: float = 2.0):
        from IPython.display import display

        self.job = job
        self.interval = interval
        self.handle = display(self._bundle(), raw=True, display_id=True)
        threading.Thread(target=self._loop, name=f"compound-report-{job.name}", daemon=True).start()

    def _bundle(self) -> dict[str, str]:
        return {"text/plain": f"{self.job!r}\n{self.job.trials!r}", "text/html": self.job._repr_html_()}

    def _loop(self) -> None:
        while not self.job.wait(self.interval):
            self.handle.update(self._bundle(), raw=True)
        self.handle.update(self._bundle(), raw=True)
