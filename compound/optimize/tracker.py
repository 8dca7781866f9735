"""Watching and stopping a DSPy optimizer from the outside.

DSPy calls `RunTracker` (a `dspy.utils.callback.BaseCallback`) on its own worker threads for every LM call,
evaluation and module call of the run; `GepaEvents` receives GEPA's richer events; `TrackedMetric` counts the
metric's calls and failures. All of them only record into the `OptimizationJob`, which is thread-safe.

How a stop reaches an optimizer that has no stop of its own: once stop is requested, `RunTracker` raises
`StopOptimization` from `on_lm_start` / `on_evaluate_start`. DSPy logs and swallows `Exception`s raised by
callbacks, and optimizers catch `Exception` around examples and trials, so `StopOptimization` is a
`KeyboardInterrupt`: it passes through DSPy's callback wrapper (which still sends every callback's end event for the
calls it unwinds; compound's tracker runs first, so no other callback sees a start without an end), through
ParallelExecutor and adapters, and optuna treats it as the interrupt it is (the running trial is marked failed, the
study ends). `OptimizationJob` catches it and returns the best program evaluated so far. Optimizers with a graceful
path use that instead (see `compound.optimize.optimizers.Strategy`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import dspy
from dspy.dsp.utils.settings import thread_local_overrides
from dspy.utils.callback import BaseCallback

from compound.optimize.routing import apply_lms, of_lineage

if TYPE_CHECKING:
    from compound.optimize.job import OptimizationJob

# Evaluations compound runs itself (baseline, result) carry this metric-key prefix; the tracker leaves them alone.
OWN_EVALUATION = "compound:"
OWN_EVALUATION_KEY = "compound_own_evaluation"  # dspy.context key set around them (their metric calls are no trials)


class StopOptimization(KeyboardInterrupt):
    """Raised inside a running optimizer after `Job.stop()`; an interrupt, so DSPy's `except Exception` lets it through."""


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

    def __init__(self, job: OptimizationJob, lms: dict[str, Any], lineage: str, *, abort_on_stop: bool,
                 evaluation_trials: bool):
        self.job = job
        self.lms = lms
        self.lineage = lineage
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
        if not isinstance(exception, StopOptimization):
            self.job._count_lm_call(failed=exception is not None)

    def on_module_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        # Optimizers run reset copies of the program whose predictors lost their LMs; give them back.
        if self.lms and of_lineage(instance, self.lineage):
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
        if str(key).startswith(OWN_EVALUATION):
            return
        # dspy.Evaluate reports percent; trials use the metric's own 0..1 scale like GEPA and bootstrapping.
        score = score_of(outputs) / 100.0
        kind = {"eval_full": "full", "eval_minibatch": "minibatch"}.get(key, "eval")
        self.job._record_trial(kind=kind, candidate=describe(program), score=score, n=n, program=program)


class GepaEvents:
    """GEPA's own callbacks (`gepa_kwargs={"callbacks": [...]}`): valset evaluations and the metric-call budget."""

    def __init__(self, job: OptimizationJob, program: dspy.Module):
        self.job = job
        self.program = program

    def on_valset_evaluated(self, event: dict[str, Any]) -> None:
        candidate = " ".join(" ".join(text.split())[:48] for text in event["candidate"].values())
        self.job._record_trial(
            kind="valset",
            candidate=f"#{event['candidate_idx']} “{candidate}”",
            score=float(event["average_score"]),
            n=int(event["num_examples_evaluated"]),
            program=with_instructions(self.program, event["candidate"]),
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
    """The run's metric, counted: calls, failures (with the first error), and each bootstrapping attempt as a trial.

    BootstrapFewShot never calls Evaluate, so with `on_score` each of its metric calls becomes a "bootstrap" row. A
    metric that raises on every one of its first `give_up_after` calls stops the run: the job then fails with that error.
    """

    give_up_after = 10

    def __init__(self, metric: Callable[..., Any], job: OptimizationJob,
                 on_score: Callable[[Any, float], None] | None = None):
        self.metric = metric
        self.job = job
        self.on_score = on_score
        self.name = getattr(metric, "__name__", None) or type(metric).__name__
        self.__name__ = self.name
        self.calls = 0
        self.failures = 0
        self.first_error: BaseException | None = None
        self._lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            value = self.metric(*args, **kwargs)
        except Exception as exc:
            with self._lock:
                self.calls += 1
                self.failures += 1
                self.first_error = self.first_error or exc
                hopeless = self.failures == self.calls >= self.give_up_after
            if hopeless:
                self.job.stop()
            raise
        with self._lock:
            self.calls += 1
        if self.on_score is not None and not thread_local_overrides.get().get(OWN_EVALUATION_KEY):
            example = args[0] if args else kwargs.get("example", kwargs.get("gold"))
            try:
                self.on_score(example, score_of(value))
            except (TypeError, ValueError):
                pass  # a metric value we cannot chart is still the optimizer's business
        return value

    @property
    def always_failed(self) -> bool:
        return self.calls > 0 and self.failures == self.calls

    def __repr__(self) -> str:  # DSPy's error logs name the metric through repr
        return f"metric {self.name!r}"


class StopGate(list):
    """The trainset as a list whose first pass ends early once stop is requested; later passes see every example.

    Only BootstrapFewShot's bootstrapping loop sees it (`gate_bootstrapping`): cutting that pass makes a stop end
    bootstrapping at the next example, and compile() still finishes with the demos found so far.
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


def gate_bootstrapping(optimizer: Any, job: OptimizationJob) -> None:
    """Make `optimizer` (compound's own copy of a BootstrapFewShot) see a StopGate during its bootstrapping pass only.

    Everything else (LabeledFewShot's sampling of the teacher's demos, the labeled demos drawn from the rest)
    sees the real trainset, so a stop at any moment still ends in a valid program.
    """
    bootstrap = optimizer._bootstrap

    def gated_bootstrap(*args: Any, **kwargs: Any) -> Any:
        full = optimizer.trainset
        optimizer.trainset = StopGate(full, job)
        try:
            return bootstrap(*args, **kwargs)
        finally:
            optimizer.trainset = full

    optimizer._bootstrap = gated_bootstrap
