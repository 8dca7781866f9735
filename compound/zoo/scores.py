"""Score LMs on the zoo's held-out tasks through DSPy (Predict + CompactAdapter + Evaluate), as a table.

Example:
    >>> import compound as cp
    >>> from compound.zoo.scores import score_lms
    >>> print(score_lms({"tiny": cp.zoo.lm("tiny"), "small": cp.zoo.lm("small")}, tasks=["triage"], n=20))
    task            tiny     small   (20 test examples each)
    triage        100.0%    100.0%
"""

from __future__ import annotations

from dataclasses import dataclass

import dspy

from compound.zoo.suite import TASKS


@dataclass
class ScoreTable:
    """Accuracy (0..1) per model and task: `table.scores["small"]["add"]`; `str()` is a text table in percent."""

    scores: dict[str, dict[str, float]]
    n: int
    split: str

    def __str__(self) -> str:
        models = list(self.scores)
        lines = [f"{'task':10}" + "".join(f"{m:>10}" for m in models) + f"   ({self.n} {self.split} examples each)"]
        for task in TASKS.names:
            if all(task in self.scores[m] for m in models):
                lines.append(f"{task:10}" + "".join(f"{100 * self.scores[m][task]:>9.1f}%" for m in models))
        return "\n".join(lines)


def score_lms(lms: dict[str, dspy.LM], *, tasks=None, n: int | None = 100, split: str = "test",
              num_threads: int = 8, adapter=None) -> ScoreTable:
    """Evaluate `dspy.Predict(task.signature)` with each LM on the first `n` examples of every task's split."""
    from compound.zoo.adapter import CompactAdapter

    adapter = adapter or CompactAdapter()
    scores: dict[str, dict[str, float]] = {name: {} for name in lms}
    chosen = [TASKS[t] for t in tasks] if tasks else list(TASKS)
    for task in chosen:
        devset = task.split(split)[:n] if n else task.split(split)
        for name, lm in lms.items():
            program = dspy.Predict(task.signature)
            program.lm = lm
            evaluate = dspy.Evaluate(devset=devset, metric=task.metric, num_threads=num_threads,
                                     display_progress=False, max_errors=len(devset) + 1)
            with dspy.context(adapter=adapter):
                scores[name][task.name] = round(evaluate(program).score / 100, 4)
    return ScoreTable(scores, len(devset), split)
