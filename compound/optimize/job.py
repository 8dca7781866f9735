"""`OptimizationJob`: one DSPy optimizer run on a background thread, with its trials, score curve and best program."""

from __future__ import annotations

import html
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import dspy
from dspy.dsp.utils.settings import thread_local_overrides
from dspy.teleprompt import Teleprompter

from compound.jobs import Job
from compound.observe import Column, LineChart, Table, chart_svg
from compound.optimize.diff import diff_html, diff_text, program_diff
from compound.optimize.logs import JOB_KEY, JobLogCapture
from compound.optimize.optimizers import Strategy, strategy_for, working_copy
from compound.optimize.routing import apply_lms, clear_lineage, mark_lineage, predictor_lms
from compound.optimize.tracker import (
    OWN_EVALUATION,
    OWN_EVALUATION_KEY,
    GepaEvents,
    RunTracker,
    StopOptimization,
    StopWhenRequested,
    TrackedMetric,
    describe,
    gate_bootstrapping,
)

TRIAL_COLUMNS = [
    Column("trial", "trial"),
    Column("kind", "kind"),
    Column("candidate", "candidate"),
    Column("n", "n"),
    Column("score", "score", ".3f"),
    Column("best", "best so far", ".3f"),
    Column("elapsed_s", "elapsed s", ".1f"),
]
# Kinds of trial rows. Scores on the validation set compete for "best so far"; a bootstrap row is one training
# example's metric value and a minibatch row a score on a few examples: shown, charted apart, never "best".
VALIDATION_KINDS = ("baseline", "full", "eval", "valset", "result")


class OptimizationJob(Job):
    """A running (or finished) `cp.optimize` run.

    `result()` returns the optimized program: the optimizer's own result, or after `stop()` the best program
    evaluated so far (the unchanged program if none was). With a `valset`, trial 0 is the starting program's score
    and the result is scored too; a result that scores below the start is warned about. Live state: `table` (the
    trial Table the views show), `curve` (a LineChart), `best_score`, `lm_calls`, `log`; `trials` is a pandas
    DataFrame of the same rows, `program_at(trial)` the program a trial evaluated and `diff(trial)` what it changed.
    In a notebook `cp.optimize` shows it live (`job.display()`); `cp.widgets.show(job)` makes another live view.

    Example:
        >>> import dspy, compound as cp
        >>> triage = cp.zoo.tasks["triage"]
        >>> dspy.configure(adapter=cp.CompactAdapter())
        >>> program = dspy.Predict(triage.signature)
        >>> program.lm = cp.zoo.lm("tiny")
        >>> job = cp.optimize(program, triage.train[:8], "LabeledFewShot", metric=triage.metric,
        ...                   valset=triage.dev[:10], k=2)
        >>> best = job.result()      # job.stop() first ends the run early and keeps the best program so far
        >>> job.trials[["trial", "kind", "n", "score"]]
           trial      kind   n  score
        0      0  baseline  10    1.0
        1      1    result  10    1.0
        >>> print(job.diff(1))       # what trial 1 changed against the starting program
        self: instructions unchanged
          + demo {ticket: ..., category: ...}
          + demo {ticket: ..., category: ...}
    """

    kind = "optimize"
    quiet = False  # silence the optimizer's per-evaluation progress bars (set when compound shows its own view)

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
        self.optimizer = optimizer  # the user's object: never modified, the run works on a copy
        self.metric = metric
        self.compile_kwargs = compile_kwargs
        self.strategy = strategy or strategy_for(optimizer)
        self.table = Table(TRIAL_COLUMNS)
        self.curve = LineChart(title="score per trial", x_label="trial", y_label="score")
        self.best_score: float | None = None
        self.best_program: dspy.Module | None = None
        self.start_score: float | None = None
        self.result_score: float | None = None
        self.warnings: list[str] = []
        self.lm_calls = 0
        self.lm_errors = 0
        self.log: list[str] | Any = []  # the run's log lines and prints (DSPy, optuna), kept out of the cells
        self._start = program
        self._lms = predictor_lms(program)
        self._programs: dict[int, dspy.Module] = {}  # trial number -> the program it evaluated (0: the start)
        self._next_trial = 1  # trial 0 is the baseline: the starting program on valset
        self._best_n = 0  # the largest validation size seen: only scores on it compete for "best"
        self._trial_lock = threading.Lock()
        self._planned_trials = compile_kwargs.get("num_trials")
        self._example_index = {id(example): i for i, example in enumerate(self.trainset)}
        self._tracked_metric: TrackedMetric | None = None
        # `with dspy.context(lm=...)` around the call reaches the job's thread (it runs in a copy of this context).
        self._settings = dict(thread_local_overrides.get())

    # -- live state -------------------------------------------------------------------------------------------
    @property
    def trials(self):
        """The trial rows as a pandas DataFrame (trial, kind, candidate, n, score, best, elapsed_s), trial 0 first."""
        import pandas as pd

        return pd.DataFrame(self.table.rows, columns=[c.key for c in TRIAL_COLUMNS])

    def stats(self) -> dict[str, str]:
        """Headline numbers for views: optimizer, trials, start and best score, LM calls."""
        best = "–" if self.best_score is None else f"{self.best_score:.3f}"
        errors = f" ({self.lm_errors} failed)" if self.lm_errors else ""
        stats = {"optimizer": self.optimizer_name, "trials": str(len(self.table.rows))}
        if self.start_score is not None:
            stats["start score"] = f"{self.start_score:.3f}"
        return {**stats, "best score": best, "LM calls": f"{self.lm_calls}{errors}"}

    def program_at(self, trial: int) -> dspy.Module:
        """A copy of the program trial `trial` evaluated (0 is the starting program), on its own LMs."""
        with self._trial_lock:
            program = self._programs.get(trial)
            known = sorted(self._programs)
        if program is None:
            kinds = {row["trial"]: row["kind"] for row in self.table.rows}
            why = f"trial {trial} is a {kinds[trial]} row with no program of its own" if trial in kinds else (
                f"there is no trial {trial}")
            raise KeyError(f"{why}; trials with a program: {known}")
        copy = program.deepcopy()
        apply_lms(copy, self._lms)
        clear_lineage(copy)
        return copy

    def diff(self, trial: int) -> str:
        """What trial `trial`'s program changed against the starting program: instructions word by word, demos."""
        return diff_text(program_diff(self._start, self.program_at(trial)))

    def _count_lm_call(self, *, failed: bool) -> None:
        with self._trial_lock:
            self.lm_calls += 1
            self.lm_errors += int(failed)
        self._changed()

    def _record_trial(self, *, kind: str, candidate: str, score: float, n: int, program: Any = None) -> int:
        validation = kind in VALIDATION_KINDS
        with self._trial_lock:
            number = 0 if kind == "baseline" else self._next_trial
            self._next_trial += number > 0
            if program is not None:
                self._programs[number] = program.deepcopy()
            if validation and n > self._best_n:  # a larger evaluation outranks scores on smaller ones
                self._best_n, self.best_score, self.best_program = n, None, None
            if validation and n == self._best_n and (self.best_score is None or score > self.best_score):
                self.best_score = score
                self.best_program = self._programs.get(number)
            best = self.best_score if validation else None
            self.table.add_row({
                "trial": number, "kind": kind, "candidate": candidate, "n": n,
                "score": round(score, 6), "best": None if best is None else round(best, 6),
                "elapsed_s": round(self.elapsed_s, 2),
            })
            series = "validation score" if validation else f"{kind} score"
            self.curve.add_point(series, number, score)
            if best is not None:
                self.curve.add_point("best so far", number, best)
        progress = None
        if self._planned_trials:
            progress = min(1.0, number / (self._planned_trials + 1))
        elif kind == "bootstrap" and self.trainset:
            progress = min(1.0, number / len(self.trainset))
        best_text = "" if self.best_score is None else f" (best {self.best_score:.3f})"
        self.update(progress=progress, detail=f"trial {number}: {kind} score {score:.3f}{best_text}")
        self._changed()
        return number

    def _bootstrap_attempt(self, example: Any, score: float) -> None:
        index = self._example_index.get(id(example))
        label = f"trainset[{index}]" if index is not None else "example"
        self._record_trial(kind="bootstrap", candidate=label, score=score, n=1)

    # -- the run ----------------------------------------------------------------------------------------------
    def run(self) -> dspy.Module:
        working = self.program.deepcopy()
        apply_lms(working, self._lms)  # deepcopy copied the LMs; the run uses the user's own LM objects
        lineage = mark_lineage(working)
        self._programs[0] = working.deepcopy()
        strategy = self.strategy
        tracker = RunTracker(self, self._lms, lineage, abort_on_stop=True, evaluation_trials=strategy.evaluation_trials)
        optimizer = self._instrumented_copy(strategy, working)
        compile_kwargs = dict(self.compile_kwargs)
        if self.valset is not None and "valset" in _compile_parameters(optimizer):
            compile_kwargs["valset"] = self.valset
        # compound's tracker first: a stop raised from its start hook leaves no other callback with an unmatched start.
        callbacks = [tracker, *self._settings.get("callbacks", dspy.settings.get("callbacks", []))]
        result = None
        with JobLogCapture(self) as capture, dspy.context(**{**self._settings, "callbacks": callbacks, JOB_KEY: self}):
            self.log = capture.log
            try:
                if self.valset is not None:
                    self.start_score = self._score(working, kind="baseline")
                tracker.abort_on_stop = strategy.abort_on_stop
                result = optimizer.compile(working, trainset=self.trainset, **compile_kwargs)
                tracker.abort_on_stop = True
                if self.valset is not None and not self.stop_requested:
                    self.result_score = self._score_result(result)
            except StopOptimization:
                pass
        self._fail_if_the_metric_never_worked()
        if result is None:
            result = self._best_so_far(working)
        elif self.stop_requested:
            self.update(detail="stopped early; kept the optimizer's result so far")
        apply_lms(result, self._lms)
        clear_lineage(result)
        self._warn_if_worse(result)
        return result

    def _instrumented_copy(self, strategy: Strategy, working: dspy.Module) -> Teleprompter:
        """A copy of the user's optimizer, hooked for this run (tracked metric, GEPA callbacks, bootstrap gate)."""
        optimizer = working_copy(self.optimizer)
        if getattr(optimizer, "metric", None) is not None:
            on_score = self._bootstrap_attempt if strategy.gate_bootstrap else None
            optimizer.metric = self._tracked_metric = TrackedMetric(optimizer.metric, self, on_score)
        if strategy.gate_bootstrap:
            gate_bootstrapping(optimizer, self)
        if strategy.gepa_stopper:
            kwargs = dict(optimizer.gepa_kwargs or {})
            kwargs["callbacks"] = [*kwargs.get("callbacks", []), GepaEvents(self, working)]
            stoppers = kwargs.get("stop_callbacks") or []
            stoppers = list(stoppers) if isinstance(stoppers, (list, tuple)) else [stoppers]
            kwargs["stop_callbacks"] = [*stoppers, StopWhenRequested(self)]
            optimizer.gepa_kwargs = kwargs
        return optimizer

    def _score(self, program: dspy.Module, *, kind: str) -> float | None:
        """Score `program` on valset and record it as a trial of `kind`; None if the metric never worked."""
        metric = self._tracked_metric or self.metric
        # Examples whose call fails score 0 rather than cancelling the evaluation after dspy's default of 10 errors.
        evaluate = dspy.Evaluate(
            devset=self.valset, metric=metric, display_progress=False, max_errors=len(self.valset) + 1
        )
        try:
            with dspy.context(**{OWN_EVALUATION_KEY: True}):
                score = evaluate(program, callback_metadata={"metric_key": f"{OWN_EVALUATION}{kind}"}).score / 100.0
        except StopOptimization:
            raise
        except Exception as exc:
            self.update(detail=f"could not score the {kind} program on valset: {type(exc).__name__}: {exc}")
            return None
        self._record_trial(kind=kind, candidate=describe(program), score=score, n=len(self.valset), program=program)
        return score

    def _score_result(self, result: dspy.Module) -> float | None:
        # The optimizer's result is often a candidate it already scored on valset (MIPROv2, GEPA): reuse that score.
        state = _state_of(result)
        with self._trial_lock:
            scored = [(row["trial"], row["score"]) for row in self.table.rows
                      if row["kind"] in VALIDATION_KINDS and row["kind"] != "baseline" and row["n"] == len(self.valset)
                      and row["trial"] in self._programs and _state_of(self._programs[row["trial"]]) == state]
        if scored:
            return scored[-1][1]
        return self._score(result, kind="result")

    def _fail_if_the_metric_never_worked(self) -> None:
        metric = self._tracked_metric
        if metric is None or not metric.always_failed:
            return
        error = metric.first_error
        note = (f"the metric {metric.name!r} raised on all {metric.calls} of its calls, so the optimizer learned "
                f"nothing; fix the metric (call it on one example and a prediction to see)")
        self.update(detail=note)
        if hasattr(error, "add_note"):
            error.add_note(f"compound: {note}")
        raise error

    def _best_so_far(self, working: dspy.Module) -> dspy.Module:
        if self.best_program is not None:
            self.update(detail=f"stopped; kept the best program evaluated so far (score {self.best_score:.3f})")
            return self.best_program.deepcopy()
        self.update(detail="stopped before any candidate was evaluated; returning the program unchanged")
        return working.deepcopy()

    def _warn_if_worse(self, result: dspy.Module) -> None:
        score = self.result_score
        if self.stop_requested and self.best_program is not None:
            score = self.best_score
        if score is None or self.start_score is None or score >= self.start_score:
            return
        self.warnings.append(
            f"the result scores {score:.3f} on valset, below the starting program's {self.start_score:.3f}: "
            "the optimizer made it worse (job.program_at(0) is the starting program)"
        )

    def result(self, timeout: float | None = None) -> dspy.Module:
        """Wait for the run and return the optimized program (see the class docstring); warns if it scored below the start."""
        program = super().result(timeout)
        for text in self.warnings:
            warnings.warn(f"{self.name}: {text}", UserWarning, stacklevel=2)
        return program

    # -- reprs and the record -------------------------------------------------------------------------------
    def summary(self) -> str:
        """The run's record as text: status, scores, warnings, and the trial table."""
        lines = [repr(self)]
        if self.start_score is not None:
            final = self.result_score if self.result_score is not None else self.best_score
            final_text = "–" if final is None else f"{final:.3f}"
            lines.append(f"start score {self.start_score:.3f} -> result {final_text} on {len(self.valset)} valset examples")
        lines += [f"warning: {text}" for text in self.warnings]
        if self.error is not None:
            lines.append(f"failed: {type(self.error).__name__}: {self.error}")
        lines.append(repr(self.table))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        stats = " · ".join(f"{html.escape(k)}: <b>{html.escape(v)}</b>" for k, v in self.stats().items())
        notes = "".join(f'<div class="compound-warning">⚠ {html.escape(text)}</div>' for text in self.warnings)
        if self.error is not None:
            notes += f'<div class="compound-job-error">{html.escape(type(self.error).__name__)}: {html.escape(str(self.error))}</div>'
        diffs = []
        for trial in sorted(self._programs):
            if trial == 0:
                continue
            try:
                body = diff_html(program_diff(self._start, self._programs[trial]))
            except Exception:  # a program the diff cannot read still leaves the rest of the record
                continue
            diffs.append(f"<details><summary>trial {trial}: changes against the start</summary>{body}</details>")
        return (
            f'<div class="compound-optimization-record" data-status="{html.escape(self.status)}">'
            f"<div><b>{html.escape(self.name)}</b> <span class=\"compound-job-status\">{html.escape(self.status)}</span>"
            f" {self.elapsed_s:.1f}s</div><div>{stats}</div>{notes}"
            f"{chart_svg(self.curve)}{self.table._repr_html_()}{''.join(diffs)}</div>"
        )

    def __repr__(self) -> str:
        stats = ", ".join(f"{k}={v}" for k, v in self.stats().items() if k != "optimizer")
        return f"<OptimizationJob {self.name!r} {self.status} {self.elapsed_s:.1f}s {stats}>"


def _state_of(program: dspy.Module) -> list[tuple[str, str, list[str]]]:
    return [(name, pred.signature.instructions, [str(d) for d in pred.demos]) for name, pred in program.named_predictors()]


def _compile_parameters(optimizer: Teleprompter) -> set[str]:
    import inspect

    return set(inspect.signature(optimizer.compile).parameters)


__all__ = ["TRIAL_COLUMNS", "VALIDATION_KINDS", "OptimizationJob"]
