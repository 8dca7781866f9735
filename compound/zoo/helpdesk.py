"""The zoo's routing module: one help desk that answers all four kinds of request of the task suite.

    kind: category       text: <a support ticket>        -> its category      (tiny and small both solve it)
    kind: order number   text: <a support ticket>        -> its order number  (small gets about half, tiny none)
    kind: conversion     text: 12 km in m                -> 12000             (small about a third, tiny rarely)
    kind: sum            text: 482 + 37                  -> 519               (neither)

Each kind goes to the zoo predictor trained for it, so the module is built only from what the zoo already does. As
one DSPy module it runs on one model per call: that is what `cp.Routed` chooses, and where the headroom lies: only
some requests need `small`, and a router can tell which from the request text.

Example:
    >>> from compound.zoo.helpdesk import HelpDesk, requests, metric
    >>> examples = requests("test", per_kind=2)
    >>> [ex.kind for ex in examples]
    ['category', 'order number', 'conversion', 'sum', 'category', 'order number', 'conversion', 'sum']
    >>> metric(examples[0], examples[0])
    1.0
"""

from __future__ import annotations

import dspy

from compound.zoo.suite import TASKS, _norm

KINDS = {"category": "triage", "order number": "extract", "conversion": "convert", "sum": "add"}


class HelpDesk(dspy.Module):
    """Answer a request of any kind with the zoo predictor for that kind; the answer is in `answer`.

    Example:
        >>> import dspy, compound as cp
        >>> desk = HelpDesk()
        >>> with dspy.context(lm=cp.zoo.lm("tiny"), adapter=cp.CompactAdapter()):
        ...     desk(kind="category", text="Hi, the app crashes on start for order 48213.").answer
        'technical'
    """

    def __init__(self):
        super().__init__()
        self.skills = {kind: dspy.Predict(TASKS[task].signature) for kind, task in KINDS.items()}

    def _skill(self, kind: str):
        if kind not in self.skills:
            raise ValueError(f"unknown request kind {kind!r}; the help desk answers {list(self.skills)}")
        return self.skills[kind], TASKS[KINDS[kind]]

    def forward(self, kind: str, text: str) -> dspy.Prediction:
        skill, task = self._skill(kind)
        return dspy.Prediction(answer=skill(**{task.inputs[0]: text})[task.outputs[0]])

    async def aforward(self, kind: str, text: str) -> dspy.Prediction:
        """`await desk.acall(...)`: the predictor's own async call (the engine serves async calls in its batch)."""
        skill, task = self._skill(kind)
        return dspy.Prediction(answer=(await skill.acall(**{task.inputs[0]: text}))[task.outputs[0]])


def requests(split: str = "train", per_kind: int | None = None) -> list[dspy.Example]:
    """Help-desk requests from a split of every task, interleaved (category, order number, conversion, sum, ...)."""
    columns = []
    for kind, task_name in KINDS.items():
        task = TASKS[task_name]
        rows = task.rows(split)[:per_kind] if per_kind else task.rows(split)
        columns.append([dspy.Example(kind=kind, text=r[task.inputs[0]], answer=r[task.outputs[0]]).with_inputs(
            "kind", "text") for r in rows])
    return [ex for group in zip(*columns) for ex in group]


def metric(example, prediction, trace=None) -> float:
    """1.0 when the answer matches (case, spacing and a final period ignored), as the zoo's task metrics."""
    got = prediction.get("answer") if isinstance(prediction, dict) else getattr(prediction, "answer", None)
    return float(_norm(got) == _norm(example.answer))
