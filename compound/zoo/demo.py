"""The demo pipeline (`compound demo`, the quickstart notebook): a support desk of two DSPy modules on two models.

    ticket --triage (zoo-tiny)--> category
           --extract (zoo-small)--> order_id

`run_demo` evaluates it with `cp.costs` (per-module calls, tokens and latency of a `dspy.Evaluate` run) and reads
each engine's batching statistics; `DemoReport` prints both as the table the CLI shows.

Example:
    >>> from compound.zoo.demo import run_demo
    >>> report = run_demo(n=8)
    >>> [(row["module"], row["model"], row["calls"]) for row in report.rows()]
    [('triage', 'local/zoo-tiny', 8), ('extract', 'local/zoo-small', 8)]
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

import dspy

from compound.trace.costs import ProgramCosts
from compound.zoo.suite import TASKS


class SupportDesk(dspy.Module):
    """Route a ticket (category) and pull out its order number: two predictors, each may use its own LM.

    Example:
        >>> import dspy, compound as cp
        >>> desk = SupportDesk(triage_lm=cp.zoo.lm("tiny"), extract_lm=cp.zoo.lm("small"))
        >>> with dspy.context(adapter=cp.CompactAdapter()):
        ...     desk(ticket="The app crashes on start for order 12345.").category
        'technical'
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
class DemoReport:
    """Scores, per-module costs and engine statistics of one demo run; `str()` is the table the CLI prints."""

    title: str
    num_threads: int
    module_scores: dict[str, float]
    costs: ProgramCosts  # what `cp.costs` measured: per-module calls, tokens and latency, and the pipeline's score
    engines: dict[str, Any]  # model string -> EngineStats (or None for an LM compound does not serve)

    def rows(self) -> list[dict[str, Any]]:
        """One dict per module: model, score, calls, tokens, latency (the table's rows, for pandas or a widget)."""
        return [{**row, "score": round(100 * self.module_scores.get(row["module"], 0.0), 1)}
                for row in self.costs.rows()]

    def __str__(self) -> str:
        lines = [self.title, f"{self.costs.n} held-out tickets, dspy.Evaluate(num_threads={self.num_threads}), "
                             f"{self.costs.seconds:.1f} s", ""]
        head = (f"{'module':10}{'model':22}{'score':>8}{'calls':>7}{'errors':>8}{'prompt tok':>12}{'output tok':>12}"
                f"{'p50 latency':>13}")
        lines += [head, "-" * len(head)]
        for r in self.rows():
            lines.append(f"{r['module']:10}{r['model']:22}{r['score']:>7.1f}%{r['calls']:>7}{r['errors']:>8}"
                         f"{r['prompt_tokens']:>12,}"
                         f"{r['output_tokens']:>12,}{r['latency_p50_ms']:>10.1f} ms")
        lines += ["-" * len(head),
                  f"{'pipeline':32}{self.costs.score:>7.1f}%   (mean of the module scores per ticket)", ""]
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
    """Run the pipeline on `devset` under `cp.costs` (one `dspy.Evaluate` run); returns a `DemoReport`."""
    import compound as cp
    from compound.lm import engine_of

    with dspy.context(adapter=adapter):
        spent = cp.costs(program, devset, metric=desk_metric, num_threads=num_threads,
                         display_progress=display_progress)
    module_scores = {
        name: statistics.fmean(task.metric(ex, pred) for ex, pred, _ in spent.results)
        for name, task in MODULE_TASKS.items()
    }
    engines = {}
    for _, predictor in program.named_predictors():
        lm = predictor.lm or dspy.settings.lm
        try:
            engines[lm.model] = engine_of(lm).stats()
        except TypeError:
            engines[lm.model] = None
    return DemoReport(title, num_threads, module_scores, spent, engines)


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
