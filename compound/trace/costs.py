"""`cp.costs(program, devset)`: what each module of a DSPy program spends, measured on a real evaluation run.

DSPy reports a program's score and, with `track_usage`, its total tokens; a pipeline of small models needs the split:
which predictor makes the calls, on which model, how many tokens go in and out, how long a call takes and how often
it fails. `ModuleCosts` is the DSPy callback that charges every predictor call (and the tokens of the LM calls inside
it) to the predictor; `costs()` runs `dspy.Evaluate` under it and returns a `ProgramCosts` that prints as a table.

Example:
    >>> import dspy, compound as cp
    >>> triage = cp.zoo.tasks["triage"]
    >>> program = dspy.Predict(triage.signature)
    >>> program.lm = cp.zoo.lm("tiny")
    >>> with dspy.context(adapter=cp.CompactAdapter()):
    ...     report = cp.costs(program, triage.test[:8], metric=triage.metric)
    >>> report["self"].calls, report["self"].model, report.score
    (8, 'local/zoo-tiny', 100.0)
"""

from __future__ import annotations

import html
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import dspy
from dspy.utils.callback import BaseCallback
from dspy.utils.usage_tracker import track_usage


@dataclass
class ModuleCost:
    """What one predictor spent: calls, failed calls, tokens (as the LM reported them) and per-call latencies."""

    name: str
    model: str = ""
    calls: int = 0
    errors: int = 0  # calls that raised, e.g. an answer the adapter could not parse
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latencies: list[float] = field(default_factory=list, repr=False)
    models: Counter = field(default_factory=Counter, repr=False)  # calls per model: a routed predictor uses several

    @property
    def model_label(self) -> str:
        """The model, or each model's share of the calls when they went to several ("zoo-tiny 61% | zoo-small 39%")."""
        if len(self.models) <= 1:
            return self.model
        total = sum(self.models.values())
        return " | ".join(f"{m.removeprefix('local/')} {100 * n / total:.0f}%" for m, n in self.models.most_common())

    @property
    def latency_p50(self) -> float:
        """Median wall-clock seconds per call (0.0 before the first call)."""
        return statistics.median(self.latencies) if self.latencies else 0.0


class ModuleCosts(BaseCallback):
    """DSPy callback: per-predictor calls, tokens and latency of every call made while it is active.

    Tokens come from a DSPy usage tracker opened around each predictor call, so they are exact even when several
    threads (Evaluate) and several predictors share a model. DSPy's cache hits cost no tokens.

    Example:
        >>> import dspy, compound as cp
        >>> from compound.testing import scripted_lm
        >>> program = dspy.Predict("question -> answer")
        >>> program.lm = scripted_lm(["answer: Paris"])
        >>> costs = ModuleCosts(program)
        >>> with dspy.context(callbacks=[costs], adapter=cp.CompactAdapter()):
        ...     _ = program(question="Capital of France?")
        >>> costs["self"].calls, costs["self"].model
        (1, 'local/scripted')
    """

    def __init__(self, program: dspy.Module):
        self._names = {id(p): name for name, p in program.named_predictors()}
        self.costs = {name: ModuleCost(name) for name in self._names.values()}
        self._open: dict[str, tuple[str, float, Any, Any]] = {}
        self._lock = threading.Lock()

    def __getitem__(self, name: str) -> ModuleCost:
        return self.costs[name]

    def on_module_start(self, call_id, instance, inputs):
        name = self._names.get(id(instance))
        if name is None:
            return
        usage_scope = track_usage()
        tracker = usage_scope.__enter__()  # closed in on_module_end, on the same thread and context
        lm = instance.lm or dspy.settings.lm
        with self._lock:
            self._open[call_id] = (name, time.perf_counter(), usage_scope, tracker)
            if lm is not None:
                self.costs[name].model = getattr(lm, "model", str(lm))
                self.costs[name].models[self.costs[name].model] += 1

    def on_module_end(self, call_id, outputs, exception=None):
        with self._lock:
            opened = self._open.pop(call_id, None)
        if opened is None:
            return
        name, start, usage_scope, tracker = opened
        usage_scope.__exit__(None, None, None)
        seconds = time.perf_counter() - start
        usage = tracker.get_total_tokens()
        with self._lock:
            cost = self.costs[name]
            cost.calls += 1
            cost.errors += exception is not None
            cost.latencies.append(seconds)
            for per_model in usage.values():
                cost.prompt_tokens += int(per_model.get("prompt_tokens") or 0)
                cost.completion_tokens += int(per_model.get("completion_tokens") or 0)


@dataclass
class ProgramCosts:
    """What `cp.costs` returns: per-module costs of one evaluation run, the score, and the run's results.

    `report["name"]` is one predictor's `ModuleCost`; `rows()` gives plain dicts (for pandas); it prints as a text
    table and renders as an HTML table in a notebook.
    """

    modules: dict[str, ModuleCost]
    n: int
    seconds: float
    score: float | None = None  # Evaluate's score in percent, None without a metric
    results: list = field(default_factory=list, repr=False)  # (example, prediction, score) per devset example

    def __getitem__(self, name: str) -> ModuleCost:
        try:
            return self.modules[name]
        except KeyError:
            raise KeyError(f"no predictor {name!r} in this program; its predictors are {list(self.modules)}") from None

    def rows(self) -> list[dict[str, Any]]:
        """One dict per predictor: module, model, calls, errors, tokens and median latency."""
        return [
            {"module": name, "model": c.model_label, "calls": c.calls, "errors": c.errors, "prompt_tokens": c.prompt_tokens,
             "output_tokens": c.completion_tokens, "latency_p50_ms": round(1000 * c.latency_p50, 1)}
            for name, c in self.modules.items()
        ]

    def _summary(self) -> str:
        score = "" if self.score is None else f", score {self.score:.1f}%"
        return f"{self.n} examples in {self.seconds:.1f} s{score}"

    def __repr__(self) -> str:
        rows = self.rows()
        # columns as wide as their longest entry: a routed module's names and model shares are long
        mw = max([16, *(len(r["module"]) + 2 for r in rows)])
        lw = max([20, *(len(r["model"]) + 2 for r in rows)])
        head = (f"{'module':{mw}}{'model':{lw}}{'calls':>7}{'errors':>8}{'prompt tok':>12}{'output tok':>12}"
                f"{'p50 latency':>13}")
        lines = [f"ProgramCosts: {self._summary()}", head]
        for r in rows:
            lines.append(f"{r['module']:{mw}}{r['model']:{lw}}{r['calls']:>7}{r['errors']:>8}{r['prompt_tokens']:>12,}"
                         f"{r['output_tokens']:>12,}{r['latency_p50_ms']:>10.1f} ms")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        cells = ["module", "model", "calls", "errors", "prompt tokens", "output tokens", "p50 latency"]
        body = "".join(
            f"<tr><td><code>{html.escape(r['module'])}</code></td><td>{html.escape(r['model'])}</td>"
            f"<td>{r['calls']}</td><td>{r['errors']}</td><td>{r['prompt_tokens']:,}</td><td>{r['output_tokens']:,}</td>"
            f"<td>{r['latency_p50_ms']:.1f} ms</td></tr>"
            for r in self.rows()
        )
        head = "".join(f"<th>{c}</th>" for c in cells)
        return (f'<div class="compound-costs"><b>Per-module cost</b>: {html.escape(self._summary())}'
                f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")


def _no_metric(example, prediction, trace=None) -> float:
    return 0.0


def costs(program: dspy.Module, devset: list, metric=None, *, num_threads: int = 8,
          display_progress: bool = False) -> ProgramCosts:
    """Run `program` on `devset` with `dspy.Evaluate` and return what each predictor spent (`ProgramCosts`).

    Every example runs, even when some calls fail: failures are counted per module (`errors`), not raised. With a
    `metric`, `score` is Evaluate's score; the LMs, adapter and callbacks of the current `dspy.context` apply.

    Example:
        >>> import dspy, compound as cp
        >>> from compound.testing import scripted_lm
        >>> program = dspy.Predict("question -> answer")
        >>> program.lm = scripted_lm(["answer: 4", "answer: 6"])
        >>> devset = [dspy.Example(question=q).with_inputs("question") for q in ("2+2", "3+3")]
        >>> with dspy.context(adapter=cp.CompactAdapter()):
        ...     report = cp.costs(program, devset, num_threads=1)
        >>> report["self"].calls, report["self"].errors, report.score is None
        (2, 0, True)
    """
    if not isinstance(program, dspy.Module):
        raise TypeError(f"cp.costs expects a DSPy program (a dspy.Module), got {type(program).__name__}; "
                        "wrap a signature first, e.g. cp.costs(dspy.Predict('question -> answer'), devset)")
    if not devset:
        raise ValueError("cp.costs needs at least one example in `devset` to measure anything")
    tracker = ModuleCosts(program)
    evaluate = dspy.Evaluate(devset=devset, metric=metric or _no_metric, num_threads=num_threads,
                             display_progress=display_progress, max_errors=len(devset) + 1)
    callbacks = [*(dspy.settings.callbacks or []), tracker]
    start = time.perf_counter()
    with dspy.context(callbacks=callbacks):
        result = evaluate(program)
    return ProgramCosts(tracker.costs, len(devset), time.perf_counter() - start,
                        result.score if metric is not None else None, result.results)
