"""The task suite the zoo models are pretrained on, exposed as DSPy data: `cp.zoo.tasks`.

Four generated tasks of graded difficulty. Every example is produced by a seeded `random.Random`, so the suite is the
same on every machine; the test split is disjoint from train and dev (checked on the input text).

    triage   ticket -> category     easy: 4 classes told apart by keywords (chance 25%)
    extract  ticket -> order_id     medium: copy the 5-digit order number past distractor numbers
    convert  quantity -> value      medium/hard: "12 km in m" -> "12000" (1-3 digit amounts); x10^k appends zeros, x12/x24/x60 multiplies
    add      expression -> total    hard: "482 + 37" -> "519", carries included

Example:
    >>> import compound as cp
    >>> task = cp.zoo.tasks["triage"]
    >>> ex = task.test[0]; sorted(ex.inputs().keys())
    ['ticket']
    >>> task.metric(ex, ex)   # a prediction carrying the gold labels scores 1.0
    1.0
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

SUITE_VERSION = 1  # bump when a generator changes: part of the zoo recipe hash
SPLIT_SIZES = {"train": 2000, "dev": 100, "test": 200}

CATEGORIES = ("billing", "technical", "account", "shipping")
_PROBLEMS = {
    "billing": [
        "I was charged twice", "my card was billed two times", "I want a refund", "the invoice is wrong",
        "my payment failed", "you overcharged me", "the price on my receipt is too high", "I was billed after I cancelled",
    ],
    "technical": [
        "the app crashes on start", "the page will not load", "I get an error when I upload a file",
        "the screen stays blank", "sync is broken", "the app freezes", "the search button does nothing",
        "the update broke the app",
    ],
    "account": [
        "I need to reset my password", "please change my email", "I want to delete my account",
        "I cannot sign in to my profile", "please update my username", "my account was locked",
        "I want to merge my two accounts", "please turn on two factor login",
    ],
    "shipping": [
        "my package has not arrived", "the parcel is late", "it was delivered to the wrong address",
        "the tracking number does not work", "the box arrived damaged", "my delivery is missing an item",
        "the courier never came", "I want to change the delivery date",
    ],
}
_OPENERS = ["", "Hi, ", "Hello, ", "Hey, ", "Help: ", "Please help, ", "Urgent: "]
_ORDER_REFS = ["order {id}", "order #{id}", "order no. {id}", "my order {id}", "#{id}"]
_DISTRACTORS = [
    "", " It cost ${n}.", " I waited {n} days.", " I have {n} items.", " This is the {n}th time.",
    " I paid {n} dollars.", " Since {n} days.",
]

_UNITS = [  # (from, to, factor): the powers of ten append zeros; 12, 24 and 60 need real multiplication
    ("km", "m", 1000), ("m", "cm", 100), ("kg", "g", 1000), ("l", "ml", 1000), ("cm", "mm", 10),
    ("h", "min", 60), ("min", "s", 60), ("ft", "in", 12), ("day", "h", 24),
]


@dataclass(frozen=True)
class Task:
    """One task of the suite: a DSPy signature, three splits of `dspy.Example` and a metric.

    `metric(example, prediction, trace=None) -> float` follows DSPy's metric convention, so it plugs straight into
    `dspy.Evaluate` and the optimizers. `chance` is the score of guessing (0.0 for open answers).
    """

    name: str
    instructions: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    difficulty: str
    chance: float
    generate: Callable[[random.Random], dict[str, str]] = field(repr=False)
    seed: int = 0

    @cached_property
    def signature(self):
        """A `dspy.Signature` class with this task's fields and instructions (all fields are strings)."""
        import dspy

        spec = ", ".join(self.inputs) + " -> " + ", ".join(self.outputs)
        return dspy.Signature(spec, self.instructions)

    def metric(self, example: Any, prediction: Any, trace: Any = None) -> float:
        """1.0 when every output field matches the gold label (case and surrounding spaces ignored), else 0.0."""
        for name in self.outputs:
            got = _norm(getattr(prediction, name, None) if not isinstance(prediction, dict) else prediction.get(name))
            if got != _norm(example[name]):
                return 0.0
        return 1.0

    @cached_property
    def _splits(self) -> dict[str, list[dict[str, str]]]:
        return _make_splits(self)

    def split(self, name: str) -> list:
        """Fresh `dspy.Example`s of one split ("train", "dev" or "test"), inputs marked with `with_inputs`."""
        import dspy

        if name not in SPLIT_SIZES:
            raise ValueError(f"unknown split {name!r}; use one of {list(SPLIT_SIZES)}")
        return [dspy.Example(**row).with_inputs(*self.inputs) for row in self._splits[name]]

    @property
    def train(self) -> list:
        return self.split("train")

    @property
    def dev(self) -> list:
        return self.split("dev")

    @property
    def test(self) -> list:
        return self.split("test")

    def rows(self, split: str) -> list[dict[str, str]]:
        """The split as plain dicts (what the zoo trainer consumes; no DSPy import)."""
        return [dict(row) for row in self._splits[split]]


def _norm(value: Any) -> str:
    return "" if value is None else " ".join(str(value).strip().lower().split()).rstrip(".")


def _make_splits(task: Task) -> dict[str, list[dict[str, str]]]:
    """Test first, then dev and train skipping any input text already taken, so the splits never overlap."""
    rng = random.Random(f"compound-zoo/{task.name}/{task.seed}")
    seen: set[tuple[str, ...]] = set()
    splits: dict[str, list[dict[str, str]]] = {}
    for split in ("test", "dev", "train"):
        rows: list[dict[str, str]] = []
        tries = 0
        while len(rows) < SPLIT_SIZES[split]:
            tries += 1
            if tries > 50 * SPLIT_SIZES[split]:
                raise RuntimeError(f"task {task.name!r} cannot produce {SPLIT_SIZES[split]} distinct examples")
            row = task.generate(rng)
            key = tuple(row[k] for k in task.inputs)
            if key in seen:
                continue
            seen.add(key)
            rows.append(row)
        splits[split] = rows
    return splits


def make_ticket(rng: random.Random) -> dict[str, str]:
    """A support ticket with its gold category and order number (shared by `triage`, `extract` and the demo)."""
    category = rng.choice(CATEGORIES)
    order_id = str(rng.randint(10000, 99999))
    problem = rng.choice(_PROBLEMS[category])
    ref = rng.choice(_ORDER_REFS).format(id=order_id)
    distractor = rng.choice(_DISTRACTORS).format(n=rng.randint(2, 99))
    opener = rng.choice(_OPENERS)
    if rng.random() < 0.5:
        text = f"{opener}{problem} for {ref}.{distractor}"
    else:
        text = f"{opener}{ref}: {problem}.{distractor}"
    return {"ticket": text[0].upper() + text[1:], "category": category, "order_id": order_id}


def _convert(rng: random.Random) -> dict[str, str]:
    unit_from, unit_to, factor = rng.choice(_UNITS)
    n = rng.randint(1, 10 ** rng.randint(1, 3) - 1)
    return {"quantity": f"{n} {unit_from} in {unit_to}", "value": str(n * factor)}


def _add(rng: random.Random) -> dict[str, str]:
    a, b = (rng.randint(0, 10 ** rng.randint(1, 3) - 1) for _ in range(2))
    return {"expression": f"{a} + {b}", "total": str(a + b)}


class TaskSuite:
    """The zoo's tasks by name: `suite["triage"]`, iteration in difficulty order, `suite.names`.

    Example:
        >>> import compound as cp
        >>> cp.zoo.tasks.names
        ('triage', 'extract', 'convert', 'add')
    """

    def __init__(self, tasks: list[Task]):
        self._tasks = {t.name: t for t in tasks}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._tasks)

    def __getitem__(self, name: str) -> Task:
        try:
            return self._tasks[name]
        except KeyError:
            raise KeyError(f"no zoo task {name!r}; the tasks are {list(self._tasks)}") from None

    def __iter__(self) -> Iterator[Task]:
        return iter(self._tasks.values())

    def __len__(self) -> int:
        return len(self._tasks)

    def __repr__(self) -> str:
        lines = [f"TaskSuite({len(self)} tasks; splits {SPLIT_SIZES})"]
        for t in self:
            fields = f"{', '.join(t.inputs)} -> {', '.join(t.outputs)}"
            lines.append(f"  {t.name:8} {fields:24} {t.difficulty:7} chance {t.chance:.2f}  {t.instructions!r}")
        return "\n".join(lines)


def _ticket_task(name: str, instructions: str, output: str, difficulty: str, chance: float, seed: int) -> Task:
    return Task(name, instructions, ("ticket",), (output,), difficulty, chance, make_ticket, seed)


TASKS = TaskSuite([
    _ticket_task("triage", "Classify the support ticket.", "category", "easy", 1 / len(CATEGORIES), seed=1),
    _ticket_task("extract", "Extract the order number.", "order_id", "medium", 0.0, seed=2),
    Task("convert", "Convert the quantity.", ("quantity",), ("value",), "medium", 0.0, _convert, seed=3),
    Task("add", "Add the numbers.", ("expression",), ("total",), "hard", 0.0, _add, seed=4),
])
