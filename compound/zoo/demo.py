"""The demo pipeline (`compound demo`, the quickstart notebook): a support desk of two DSPy modules on two models.

    ticket --triage (zoo-tiny)--> category
           --extract (zoo-small)--> order_id

`ModuleCosts` is a DSPy callback that charges every LM call to the predictor that made it (tokens as the engine
counted them, wall-clock latency), so a pipeline's cost can be read per module after `dspy.Evaluate`.

Example:
    >>> import compound as cp
    >>> from compound.zoo.demo import run_demo
    >>> print(run_demo(n=24))          # doctest: +SKIP
"""

from __future__ import annotations

import statistics
import threading
from collections import Counter
import time
from dataclasses import dataclass, field
from typing import Any

import dspy
from dspy.utils.callback import BaseCallback
from dspy.utils.usage_tracker import track_usage

from compound.zoo.suite import TASKS


class SupportDesk(dspy.Module):
    """Route a ticket (category) and pull out its order number: two predictors, each may use its own LM.

    Example:
        >>> import compound as cp
        >>> desk = SupportDesk(triage_lm=cp.zoo.lm("tiny"), extract_lm=cp.zoo.lm("small"))   # doctest: +SKIP
        >>> desk(ticket="The app crashes on start for order 12345.")                         # doctest: +SKIP
        Prediction(category='technical', order_id='12345')
    """

    def __init__(self, triage_lm=None, extract_lm=None):
        super().__init__()
        self.triage = dspy.Predict(TASKS["triage"].signature)
        self.extract = dspy.Predict(TASKS["extract"].signature)
        self.triage.lm, self.extract.lm = triage_lm, extract_lm

    def forward(self, ticket: str) -> dspy.Prediction:
        category = self.triage(ticket=ticket).category
        order_id = self.extract(ticket=ticket).order_id
        return dspy.Prediction(category=category, order_id=order_id)


MODULE_TASKS = {"triage": TASKS["triage"], "extract": TASKS["extract"]}


def tickets(n: int | None = None, split: str = "test") -> list[dspy.Example]:
    """Held-out support tickets labelled with both `category` and `order_id` (inputs: `ticket`)."""
    examples = TASKS["triage"].split(split)
    return examples[:n] if n else examples


def desk_metric(example, prediction, trace=None) -> float:
    """Share of the pipeline's fields that are right (0, 0.5 or 1)."""
    return sum(task.metric(example, prediction) for task in MODULE_TASKS.values()) / len(MODULE_TASKS)


@dataclass
class ModuleCost:
    """What one predictor spent: calls, tokens (as the engine counted them) and per-call wall-clock latencies."""

    name: str
    model: str = ""
    calls: int = 0
    errors: int = 0  # calls that raised, e.g. an answer the adapter could not parse
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latencies: list[float] = field(default_factory=list)
    models: Counter = field(default_factory=Counter)  # calls per model: a routed module (cp.Routed) uses several

    @property
    def model_label(self) -> str:
        """The model, or each model's share of the calls when a router spread them ("zoo-tiny 61% | zoo-small 39%")."""
        if len(self.models) <= 1:
            return self.model
        total = sum(self.models.values())
        return " | ".join(f"{m.removeprefix('local/')} {100 * n / total:.0f}%" for m, n in self.models.most_common())

    @property
    def latency_p50(self) -> float:
        return statistics.median(self.latencies) if self.latencies else 0.0


class ModuleCosts(BaseCallback):
    """DSPy callback: per-predictor calls, tokens and latency of every call made while it is active.

    Tokens come from a nested `dspy` usage tracker opened around each predictor call, so they are exact even when
    several threads (Evaluate) and several predictors share a model.

    Example:
        >>> costs = ModuleCosts(program)                                           # doctest: +SKIP
        >>> with dspy.context(callbacks=[costs]):                                  # doctest: +SKIP
        ...     dspy.Evaluate(devset=dev, metric=metric, num_threads=8)(program)
        >>> costs["triage"].prompt_tokens                                          # doctest: +SKIP
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
class DemoReport:
    """Scores, per-module costs and engine statistics of one demo run; `str()` is the table the CLI prints."""

    title: str
    n: int
    num_threads: int
    score: float
    module_scores: dict[str, float]
    costs: dict[str, ModuleCost]
    engines: dict[str, Any]  # model string -> EngineStats (or None for an LM compound does not serve)
    seconds: float

    def rows(self) -> list[dict[str, Any]]:
        """One dict per module: model, score, calls, tokens, latency (the table's rows, for pandas or a widget)."""
        return [
            {
                "module": name,
                "model": c.model_label,
                "score": round(100 * self.module_scores.get(name, 0.0), 1),
                "calls": c.calls,
                "errors": c.errors,
                "prompt_tokens": c.prompt_tokens,
                "output_tokens": c.completion_tokens,
                "latency_p50_ms": round(1000 * c.latency_p50, 1),
            }
            for name, c in self.costs.items()
        ]

    def __str__(self) -> str:
        lines = [self.title, f"{self.n} held-out tickets, dspy.Evaluate(num_threads={self.num_threads}), "
                             f"{self.seconds:.1f} s", ""]
        head = (f"{'module':10}{'model':22}{'score':>8}{'calls':>7}{'errors':>8}{'prompt tok':>12}{'output tok':>12}"
                f"{'p50 latency':>13}")
        lines += [head, "-" * len(head)]
        for r in self.rows():
            lines.append(f"{r['module']:10}{r['model']:22}{r['score']:>7.1f}%{r['calls']:>7}{r['errors']:>8}"
                         f"{r['prompt_tokens']:>12,}"
                         f"{r['output_tokens']:>12,}{r['latency_p50_ms']:>10.1f} ms")
        lines += ["-" * len(head), f"{'pipeline':32}{self.score:>7.1f}%   (mean of the module scores per ticket)", ""]
        lines.append("engine batching (compound.lm.engine_of(lm).stats()):")
        for model, s in self.engines.items():
            if s is None:
                lines.append(f"  {model}: not served by compound")
                continue
            sizes = sorted(((int(k), v) for k, v in s.batch_size_hist.items()), key=lambda kv: kv[0])
            largest = sizes[-1][0] if sizes else 0
            lines.append(f"  {model:20} {s.requests_finished} requests, {s.steps} decode steps, "
                         f"mean batch {s.mean_batch_size:.1f} (max {largest}), "
                         f"{s.prompt_tokens:,} prompt + {s.generated_tokens:,} generated tokens, "
                         f"prefix cache saved {s.prefill_tokens_saved:,}")
        return "\n".join(lines)


def evaluate_desk(program: SupportDesk, devset, *, num_threads: int = 8, adapter=None,
                  title: str = "compound demo", display_progress: bool = False) -> DemoReport:
    """Run `dspy.Evaluate` on the pipeline with per-module cost tracking; returns a `DemoReport`."""
    from compound.lm import engine_of

    costs = ModuleCosts(program)
    evaluate = dspy.Evaluate(devset=devset, metric=desk_metric, num_threads=num_threads,
                             display_progress=display_progress, max_errors=len(devset) + 1)
    start = time.perf_counter()
    with dspy.context(callbacks=[costs], adapter=adapter):
        result = evaluate(program)
    seconds = time.perf_counter() - start
    module_scores = {
        name: statistics.fmean(task.metric(ex, pred) for ex, pred, _ in result.results)
        for name, task in MODULE_TASKS.items()
    }
    engines = {}
    for _, predictor in program.named_predictors():
        lm = predictor.lm or dspy.settings.lm
        try:
            engines[lm.model] = engine_of(lm).stats()
        except TypeError:
            engines[lm.model] = None
    return DemoReport(title, len(devset), num_threads, result.score, module_scores, costs.costs, engines, seconds)


def run_demo(model: str | None = None, *, n: int | None = None, num_threads: int = 8, cache_dir=None,
             adapter: str = "auto", display_progress: bool = False) -> DemoReport:
    """Build or load the zoo, run the support desk and return its report.

    `model=None` puts triage on zoo-tiny and extraction on zoo-small with `CompactAdapter`; a hub id or folder runs
    both modules on that model with DSPy's ChatAdapter (`adapter="compact"` or `"chat"` forces one).
    """
    import compound.zoo as zoo
    from compound.lm import LM
    from compound.zoo.adapter import CompactAdapter

    if model is None:
        triage_lm, extract_lm = zoo.lm("tiny", cache_dir), zoo.lm("small", cache_dir)
        title = "compound demo: support desk on the offline zoo (triage: zoo-tiny, extract: zoo-small)"
        compact = adapter != "chat"
    else:
        from pathlib import Path

        triage_lm = extract_lm = LM(model, max_tokens=64, cache=False)
        is_zoo_folder = (Path(model) / "manifest.json").is_file()
        compact = adapter == "compact" or (adapter == "auto" and is_zoo_folder)
        title = f"compound demo: support desk on {model}"
    chosen = CompactAdapter() if compact else dspy.ChatAdapter()
    title += f" [{type(chosen).__name__}]"
    program = SupportDesk(triage_lm, extract_lm)
    return evaluate_desk(program, tickets(n), num_threads=num_threads, adapter=chosen, title=title,
                         display_progress=display_progress)
