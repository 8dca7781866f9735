"""Watching and stopping a DSPy optimizer from the outside.

DSPy calls `RunTracker` (a `dspy.utils.callback.BaseCallback`) on its own worker threads for every LM call,
evaluation and module call of the run; `GepaEvents` receives GEPA's richer events. Both only record into the
`OptimizationJob`, which is thread-safe.

How a stop reaches an optimizer that has no stop API of its own: once stop is requested, `RunTracker` raises
`StopOptimization` from `on_lm_start` / `on_evaluate_start`. DSPy logs and swallows `Exception`s raised by
callbacks, and optimizers catch `Exception` around examples and trials, so `StopOptimization` derives from
`BaseException` (as `asyncio.CancelledError` does): it passes through DSPy's callback wrapper, ParallelExecutor,
adapters and optuna's trial loop, unwinds the whole `compile()` within one LM call, and `OptimizationJob`
catches it and returns the best program evaluated so far. Optimizers with a graceful path use that instead
(see `compound.optimize.optimizers.Strategy`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import dspy
from dspy.utils.callback import BaseCallback

from compound.optimize.routing import apply_lms, same_structure

if TYPE_CHECKING:
    from compound.optimize.job import OptimizationJob


class StopOptimization(BaseException):
    """Raised inside a running optimizer after `Job.stop()`; a BaseException so DSPy's `except Exception` lets it through."""


def score_of(value: Any) -> float:
    """A metric's return value (bool, number, or a Prediction with `.score`) as a float."""
    if hasattr(value, "score"):
        value = value.score
    return float(value)


def describe(program: dspy.Module, width: int = 110) -> str:
    """A one-line summary of a candidate program: demos and the start of each predictor's instructions."""
    parts = []
    predictors = list(program.named_predictors())
    for name, pred in predictors:
        instructions = " ".join(pred.signature.instructions.split())
        label = "" if len(predictors) == 1 else f"{name}: "
        demos = f"{len(pred.demos)} demo{'' if len(pred.demos) == 1 else 's'}"
        parts.append(f"{label}{demos}, “{instructions[:48]}”")
    text = "; ".join(parts)
    return text if len(text) <= width else text[: width - 1] + "…"


class RunTracker(BaseCallback):
    """Counts LM calls, records each finished evaluation as a trial, re-applies predictor LMs, and stops the run."""

    def __init__(self, job: OptimizationJob, lms: dict[str, Any], *, abort_on_stop: bool, evaluation_trials: bool):
        self.job = job
        self.lms = lms
        self.names = frozenset(name for name, _ in job.program.named_predictors())
        self.abort_on_stop = abort_on_stop  # raise StopOptimization on the next call once stop is requested
        self.evaluation_trials = evaluation_trials  # whether each Evaluate call is a row of the trial table
        self._evaluations: dict[str, tuple[Any, int, str]] = {}
        self._lock = threading.Lock()

    def _check_stop(self) -> None:
        if self.abort_on_stop and self.job.stop_requested:
            raise StopOptimization(f"optimization {self.job.name!r} stopped by request")

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        self._check_stop()

    def on_lm_end(self, call_id: str, outputs: Any, exception: Exception | None = None) -> None:
        self.job._count_lm_call(failed=exception is not None)

    def on_module_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        # Optimizers run reset copies of the program whose predictors lost their LMs; give them back.
        if self.lms and same_structure(instance, self.names):
            apply_lms(instance, self.lms, replace_copies=False)

    def on_evaluate_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        self._check_stop()
        if self.job.quiet and inputs.get("display_progress") is None:
            # The optimizer's own Evaluate objects would print a progress bar per trial from this worker
            # thread, into whichever notebook cell runs at the moment; the job's view shows the trials instead.
            instance.display_progress = False
        program = inputs.get("program")
        devset = inputs.get("devset") or getattr(instance, "devset", None) or []
        metadata = inputs.get("callback_metadata") or {}
        with self._lock:
            self._evaluations[call_id] = (program, len(devset), metadata.get("metric_key", "eval"))

    def on_evaluate_end(self, call_id: str, outputs: Any, exception: Exception | None = None) -> None:
        with self._lock:
            program, n, key = self._evaluations.pop(call_id, (None, 0, "eval"))
        if exception is not None or outputs is None or not self.evaluation_trials or program is None:
            return
        # dspy.Evaluate reports percent; trials use the metric's own 0..1 scale like GEPA and bootstrapping.
        score = score_of(outputs) / 100.0
        kind = {"eval_full": "full", "eval_minibatch": "minibatch"}.get(key, "eval")
        self.job._record_trial(kind=kind, candidate=describe(program), score=score, n=n, program=program)


class GepaEvents:
    """GEPA's own callbacks (`gepa_kwargs={"callbacks": [...]}`): valset evaluations and the metric-call budget."""

    def __init__(self, job: OptimizationJob):
        self.job = job

    def on_valset_evaluated(self, event: dict[str, Any]) -> None:
        candidate = " ".join(" ".join(text.split())[:48] for text in event["candidate"].values())
        self.job._record_trial(
            kind="valset",
            candidate=f"#{event['candidate_idx']} “{candidate}”",
            score=float(event["average_score"]),
            n=int(event["num_examples_evaluated"]),
            program=with_instructions(self.job.program, event["candidate"]),
        )

    def on_budget_updated(self, event: dict[str, Any]) -> None:
        remaining = event.get("metric_calls_remaining")
        if remaining is not None:
            used = event["metric_calls_used"]
            self.job.update(progress=used / max(1, used + remaining))


def with_instructions(program: dspy.Module, candidate: dict[str, str]) -> dspy.Module | None:
    """The program GEPA means by `candidate` ({predictor name: instructions}), built as GEPA's DSPy adapter does.

    None when the candidate also holds components other than predictor instructions (dspy.Flex code).
    """
    predictors = dict(program.named_predictors())
    if not set(candidate) <= set(predictors):
        return None
    built = program.deepcopy()
    for name, pred in built.named_predictors():
        if name in candidate:
            pred.signature = pred.signature.with_instructions(candidate[name])
    return built


class StopWhenRequested:
    """A GEPA stopper (`gepa_kwargs={"stop_callbacks": [...]}`): GEPA ends before its next iteration and keeps its best."""

    def __init__(self, job: OptimizationJob):
        self.job = job

    def __call__(self, gepa_state: Any) -> bool:
        return self.job.stop_requested


class TrackedMetric:
    """Wraps the metric so each bootstrapping attempt (BootstrapFewShot never calls Evaluate) becomes a trial."""

    def __init__(self, metric: Callable[..., Any], on_score: Callable[[Any, float], None]):
        self.metric = metric
        self.on_score = on_score
        self.__name__ = getattr(metric, "__name__", "metric")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        value = self.metric(*args, **kwargs)
        example = args[0] if args else kwargs.get("example", kwargs.get("gold"))
        try:
            self.on_score(example, score_of(value))
        except (TypeError, ValueError):
            pass  # a metric value we cannot chart is still the optimizer's business
        return value


class StopGate(list):
    """The trainset as a list whose first pass ends early once stop is requested; later passes see every example.

    BootstrapFewShot walks the trainset once to bootstrap demos and again to pick labeled demos from the rest;
    cutting only the first pass makes a stop end bootstrapping at the next example and still finish compile().
    """

    def __init__(self, items: Any, job: OptimizationJob):
        super().__init__(items)
        self.job = job
        self._cut = False

    def __iter__(self) -> Iterator[Any]:
        for position, item in enumerate(super().__iter__()):
            # A pass always includes its first example: BootstrapFewShot's loop needs one iteration to finish.
            if position > 0 and not self._cut and self.job.stop_requested:
                self._cut = True
                return
            yield item
