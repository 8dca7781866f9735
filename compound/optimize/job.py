"""`OptimizationJob`: one DSPy optimizer run on a background thread, with its trials, score curve and best program."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import dspy
from dspy.teleprompt import Teleprompter

from dspy.dsp.utils.settings import thread_local_overrides

from compound.jobs import Job
from compound.optimize.optimizers import Strategy, strategy_for
from compound.optimize.routing import apply_lms, predictor_lms
from compound.optimize.tracker import (
    GepaEvents,
    RunTracker,
    StopGate,
    StopOptimization,
    StopWhenRequested,
    TrackedMetric,
)
from compound.observe import Column, LineChart, Observable, Table

TRIAL_COLUMNS = [
    Column("trial", "trial"),
    Column("kind", "kind"),
    Column("candidate", "candidate"),
    Column("n", "n"),
    Column("score", "score", ".3f"),
    Column("best", "best so far", ".3f"),
    Column("elapsed_s", "elapsed s", ".1f"),
]


class OptimizationJob(Job):
    """A running (or finished) `cp.optimize` run.

    `result()` returns the optimized program: the optimizer's own result, or after `stop()` the best program
    seen so far. Live state for views and scripts: `trials` (a Table), `curve` (a LineChart of score and best so
    far per trial), `best_score`, `lm_calls`.

    Example:
        >>> job = cp.optimize(program, trainset, optimizer="MIPROv2", metric=exact)   # doctest: +SKIP
        >>> job.stop(); best = job.result()                                           # doctest: +SKIP
    """

    kind = "optimize"
    quiet = False  # silence the optimizer's per-evaluation progress bars (set when compound shows its own view)
    _shown = False  # set once cp.optimize displayed the live view, so the rich repr does not add a second one

    def __init__(
        self,
        program: dspy.Module,
        trainset: Sequence[dspy.Example],
        optimizer: Teleprompter,
        *,
        compile_kwargs: dict[str, Any],
        valset: Sequence[dspy.Example] | None = None,
        metric: Callable[..., Any] | None = None,
        name: str | None = None,
        strategy: Strategy | None = None,
    ):
        self.optimizer_name = type(optimizer).__name__
        super().__init__(name or f"{self.optimizer_name} on {type(program).__name__}")
        self.program = program
        self.trainset = list(trainset)
        self.valset = None if valset is None else list(valset)
        self.optimizer = optimizer
        self.metric = metric
        self.compile_kwargs = compile_kwargs
        self.strategy = strategy or strategy_for(optimizer)
        self.trials = Table(TRIAL_COLUMNS)
        self.curve = LineChart(title="score per trial", x_label="trial", y_label="score")
        self.best_score: float | None = None
        self.best_program: dspy.Module | None = None
        self.lm_calls = 0
        self.lm_errors = 0
        self._best_n = 0  # the largest evaluation size seen: only scores on it compete for "best"
        self._stats = Observable()  # LM-call counts change too often for job notifications; views watch this
        self._trial_lock = threading.Lock()
        self._planned_trials = compile_kwargs.get("num_trials")
        self._example_index = {id(example): i for i, example in enumerate(self.trainset)}
        # `with dspy.context(lm=...)` around the call must reach the job's thread, which starts with no overrides.
        self._settings = dict(thread_local_overrides.get())

    # -- live state -------------------------------------------------------------------------------------------
    def watch(self, fn: Callable[[Any], None]) -> Callable[[], None]:
        """Call `fn` after every change of the live stats (LM calls, trials)."""
        return self._stats.watch(fn)

    def stats(self) -> dict[str, str]:
        """Headline numbers for views: optimizer, trials, best score, LM calls."""
        best = "–" if self.best_score is None else f"{self.best_score:.3f}"
        errors = f" ({self.lm_errors} failed)" if self.lm_errors else ""
        return {
            "optimizer": self.optimizer_name,
            "trials": str(len(self.trials.rows)),
            "best score": best,
            "LM calls": f"{self.lm_calls}{errors}",
        }

    def _count_lm_call(self, *, failed: bool) -> None:
        with self._trial_lock:
            self.lm_calls += 1
            self.lm_errors += int(failed)
        self._stats._changed()

    def _record_trial(self, *, kind: str, candidate: str, score: float, n: int, program: Any = None) -> None:
        with self._trial_lock:
            number = len(self.trials.rows) + 1
            if n > self._best_n:  # a larger evaluation outranks scores on smaller (minibatch) ones
                self._best_n, self.best_score, self.best_program = n, None, None
            if n == self._best_n and (self.best_score is None or score > self.best_score):
                self.best_score = score
                if program is not None:
                    self.best_program = program
            best = self.best_score if self.best_score is not None else score
            self.trials.add_row({
                "trial": number, "kind": kind, "candidate": candidate, "n": n,
                "score": round(score, 6), "best": round(best, 6), "elapsed_s": round(self.elapsed_s, 2),
            })
            self.curve.add_point("score", number, score)
            self.curve.add_point("best so far", number, best)
        progress = None
        if self._planned_trials:  # MIPROv2: the first evaluation is the unoptimized baseline, then one per trial
            progress = min(1.0, (number - 1) / self._planned_trials)
        elif kind == "bootstrap" and self.trainset:
            progress = number / len(self.trainset)
        self.update(progress=progress, detail=f"trial {number}: {kind} score {score:.3f} (best {best:.3f})")
        self._stats._changed()

    def _bootstrap_attempt(self, example: Any, score: float) -> None:
        index = self._example_index.get(id(example))
        label = f"trainset[{index}]" if index is not None else "example"
        self._record_trial(kind="bootstrap", candidate=label, score=score, n=1)

    # -- the run ----------------------------------------------------------------------------------------------
    def run(self) -> dspy.Module:
        lms = predictor_lms(self.program)
        strategy = self.strategy
        tracker = RunTracker(
            self, lms, abort_on_stop=strategy.abort_on_stop, evaluation_trials=strategy.evaluation_trials
        )
        compile_kwargs = dict(self.compile_kwargs)
        if self.valset is not None and "valset" in _compile_parameters(self.optimizer):
            compile_kwargs["valset"] = self.valset
        trainset = StopGate(self.trainset, self) if strategy.gate_trainset else self.trainset
        restore = self._instrument(strategy)
        result = None
        try:
            callbacks = [*self._settings.get("callbacks", dspy.settings.get("callbacks", [])), tracker]
            with dspy.context(**{**self._settings, "callbacks": callbacks}):
                result = self.optimizer.compile(self.program, trainset=trainset, **compile_kwargs)
                evaluated = any(row["kind"] != "bootstrap" for row in self.trials.rows)
                if self.valset is not None and not evaluated and not self.stop_requested:
                    tracker.abort_on_stop = True  # the optimizer never evaluated: score its result on valset
                    self._evaluate(result)
        except StopOptimization:
            pass
        finally:
            restore()
        if result is None:
            result = self._best_so_far()
        elif self.stop_requested:
            self.update(detail="stopped early; kept the optimizer's result so far")
        apply_lms(result, lms)
        return result

    def _best_so_far(self) -> dspy.Module:
        if self.best_program is not None:
            self.update(detail=f"stopped; kept the best program (score {self.best_score:.3f})")
            return self.best_program.deepcopy()
        self.update(detail="stopped before any candidate was evaluated; returning the program unchanged")
        return self.program.deepcopy()

    def _evaluate(self, program: dspy.Module) -> None:
        # Examples whose call fails score 0 instead of cancelling the evaluation (and failing the job) after
        # dspy's default of 10 errors: the optimized program is the result either way.
        evaluate = dspy.Evaluate(
            devset=self.valset, metric=self.metric, display_progress=False, max_errors=len(self.valset) + 1
        )
        try:
            evaluate(program)
        except Exception as exc:
            self.update(detail=f"could not score the result on valset: {type(exc).__name__}: {exc}")

    def _instrument(self, strategy: Strategy) -> Callable[[], None]:
        """Hook the optimizer for this run (metric wrapper, GEPA callbacks); returns a function that undoes it."""
        undo: list[Callable[[], None]] = []
        optimizer = self.optimizer
        if strategy.gate_trainset and not strategy.abort_on_stop and getattr(optimizer, "metric", None) is not None:
            original_metric = optimizer.metric
            optimizer.metric = TrackedMetric(original_metric, self._bootstrap_attempt)
            undo.append(lambda: setattr(optimizer, "metric", original_metric))
        if strategy.gepa_stopper:
            original_kwargs = optimizer.gepa_kwargs
            kwargs = dict(original_kwargs)
            kwargs["callbacks"] = [*kwargs.get("callbacks", []), GepaEvents(self)]
            stoppers = kwargs.get("stop_callbacks") or []
            stoppers = list(stoppers) if isinstance(stoppers, (list, tuple)) else [stoppers]
            kwargs["stop_callbacks"] = [*stoppers, StopWhenRequested(self)]
            optimizer.gepa_kwargs = kwargs
            undo.append(lambda: setattr(optimizer, "gepa_kwargs", original_kwargs))

        def restore() -> None:
            for fn in reversed(undo):
                fn()

        return restore

    def _repr_html_(self) -> str:
        import html

        stats = " · ".join(f"{k}: {html.escape(v)}" for k, v in self.stats().items())
        return (
            f'<div class="compound-optimization"><b>{html.escape(self.name)}</b> '
            f"<span>{html.escape(self.status)}</span> {self.elapsed_s:.1f}s<br>{stats}"
            f"{self.trials._repr_html_()}</div>"
        )

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any]:
        from compound.widgets._live import live_view_bundle

        live = {} if self._shown else live_view_bundle(self)
        return {"text/plain": repr(self), "text/html": self._repr_html_(), **live}

    def show(self):
        """A new live view of this run (job header with Stop, score curve, trial table); needs anywidget."""
        from compound.widgets._live import view_for

        return view_for(self)

    def __repr__(self) -> str:
        stats = ", ".join(f"{k}={v}" for k, v in self.stats().items() if k != "optimizer")
        return f"<OptimizationJob {self.name!r} {self.status} {self.elapsed_s:.1f}s {stats}>"


def _compile_parameters(optimizer: Teleprompter) -> set[str]:
    import inspect

    return set(inspect.signature(optimizer.compile).parameters)


__all__ = ["TRIAL_COLUMNS", "OptimizationJob"]
