"""`cp.optimize`: run any DSPy optimizer in the background with a live view and a Stop button."""

from __future__ import annotations

import contextvars
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

import dspy
from dspy.teleprompt import Teleprompter

from compound.optimize.job import OptimizationJob
from compound.optimize.optimizers import build_optimizer

_DISPLAY_MODES = ("auto", "text", "none")


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

    `optimizer` is a DSPy optimizer instance or its exact name ("BootstrapFewShot", "MIPROv2", "GEPA", "COPRO",
    "LabeledFewShot", "BootstrapFewShotWithRandomSearch"; case does not matter); `kwargs` go to its constructor or
    `compile()`, whichever takes them. Neither `program` nor an optimizer instance is modified. With a `valset`, the
    starting program is scored first (trial 0) and so is the result. In a notebook the live view (trial table, score
    curve, elapsed time, LM calls, Stop) appears under the cell and becomes the run's record when it ends;
    elsewhere a status line goes to stderr every few seconds and the run's summary when it ends (`display=False`:
    nothing). `job.stop()`, Stop, or interrupting the kernel while a cell waits in `job.result()` ends the run at its
    next safe point with the best program so far.

    Example:
        >>> import dspy, compound as cp
        >>> triage = cp.zoo.tasks["triage"]
        >>> dspy.configure(adapter=cp.CompactAdapter())
        >>> program = dspy.Predict(triage.signature)
        >>> program.lm = cp.zoo.lm("tiny")
        >>> job = cp.optimize(program, triage.train[:8], "BootstrapFewShot", metric=triage.metric,
        ...                   valset=triage.dev[:10], max_bootstrapped_demos=2)
        >>> better = job.result()        # or job.stop() first to end early and keep the best so far
        >>> job.start_score, job.result_score
        (1.0, 1.0)
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
    if valset is not None and not valset:
        raise ValueError("`valset` is empty; pass None to go without one, or some examples to score candidates on")
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
    if mode == "auto" and job.display():
        return job  # a notebook: the live view (or its text) is under the cell
    if mode != "none":
        TextReporter(job)
    return job


class TextReporter:
    """Prints one status line every `interval` seconds while the job runs, and its summary when it ends."""

    def __init__(self, job: OptimizationJob, interval: float = 5.0, stream: Any = None):
        self.job = job
        self.stream = stream or sys.stderr
        self.interval = interval
        # In the caller's context, so in a notebook the lines land in the cell that started the job.
        context = contextvars.copy_context()
        self.thread = threading.Thread(target=context.run, args=(self._loop,), name=f"compound-report-{job.name}",
                                       daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.job.wait(self.interval):
            print(repr(self.job), file=self.stream, flush=True)
        print(self.job.summary(), file=self.stream, flush=True)
