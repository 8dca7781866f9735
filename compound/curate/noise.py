"""Known corruptions for testing an audit: wrong labels, near-duplicate copies and leaked held-out examples.

`inject_noise` returns the corrupted list and where each corruption went, so a test, a benchmark or a notebook can
measure how much of it `cp.curate` finds. The input examples are not modified.

Example:
    >>> import compound as cp
    >>> from compound.curate.noise import inject_noise
    >>> triage = cp.zoo.tasks["triage"]
    >>> noisy, truth = inject_noise(triage.train[:100], wrong_labels=0.1, near_duplicates=0.05,
    ...                             leaked=triage.dev, leaks=0.03, seed=0)
    >>> len(noisy), len(truth.wrong_labels), len(truth.duplicates), len(truth.leaks)
    (108, 10, 5, 3)
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

# Light edits that keep an example the same example: what copy-paste, re-scraping or a second annotator produce.
EDITS: tuple[Callable[[str], str], ...] = (
    str.lower,
    lambda s: s.rstrip(".!?") + "!",
    lambda s: s.replace(" ", "  ", 1),
    lambda s: "Hi, " + s[:1].lower() + s[1:],
    lambda s: s + " Thanks.",
    str.upper,
)


@dataclass
class NoiseTruth:
    """Positions (in the noisy list) of each injected corruption."""

    wrong_labels: dict[int, str] = field(default_factory=dict)  # position -> the correct label
    duplicates: dict[int, int] = field(default_factory=dict)  # copy position -> original position
    leaks: dict[int, int] = field(default_factory=dict)  # position -> index in the leaked split


def inject_noise(
    examples: Sequence[Any],
    *,
    label_field: str | None = None,
    wrong_labels: float = 0.1,
    near_duplicates: float = 0.05,
    leaked: Sequence[Any] = (),
    leaks: float = 0.03,
    seed: int = 0,
) -> tuple[list[Any], NoiseTruth]:
    """Copies of `examples` with `wrong_labels` of them relabelled, `near_duplicates` lightly edited copies added,
    and `leaks` (a fraction of len(examples)) examples of `leaked` slipped in, all shuffled; plus a `NoiseTruth`."""
    rng = random.Random(seed)
    rows = [ex.copy() for ex in examples]
    n = len(rows)
    label_field = label_field or next(iter(rows[0].labels().keys()))
    input_field = next(iter(rows[0].inputs().keys()))
    classes = sorted({ex[label_field] for ex in rows})
    categorical = len(classes) <= 50

    # each row is (example, tag): tag says what it is, resolved to positions after the shuffle
    tagged: list[tuple[Any, tuple]] = []
    wrong = set(rng.sample(range(n), round(wrong_labels * n)))
    for i, ex in enumerate(rows):
        if i in wrong:
            correct = ex[label_field]
            if categorical:
                ex[label_field] = rng.choice([c for c in classes if c != correct])
            else:  # free text: another example's label, as a misaligned join would produce
                ex[label_field] = rng.choice([r[label_field] for r in rows if r[label_field] != correct])
            tagged.append((ex, ("wrong", correct)))
        else:
            tagged.append((ex, ("clean", i)))
    for i in rng.sample(range(n), round(near_duplicates * n)):
        copy = rows[i].copy()
        copy[input_field] = rng.choice(EDITS)(copy[input_field])
        tagged.append((copy, ("copy", id(rows[i]))))
    for j in rng.sample(range(len(leaked)), min(len(leaked), round(leaks * n))):
        leak = leaked[j].copy()
        if rng.random() < 0.5:
            leak[input_field] = rng.choice(EDITS)(leak[input_field])
        tagged.append((leak, ("leak", j)))

    rng.shuffle(tagged)
    position = {id(ex): p for p, (ex, _) in enumerate(tagged)}
    truth = NoiseTruth()
    for p, (_, (kind, ref)) in enumerate(tagged):
        if kind == "wrong":
            truth.wrong_labels[p] = ref
        elif kind == "copy":
            truth.duplicates[p] = position[ref]
        elif kind == "leak":
            truth.leaks[p] = ref
    return [ex for ex, _ in tagged], truth


def precision_recall(flagged: set[int], truth: set[int]) -> tuple[float, float]:
    """(precision, recall) of `flagged` positions against `truth` positions (1.0 for empty denominators)."""
    hits = len(flagged & truth)
    return (hits / len(flagged) if flagged else 1.0, hits / len(truth) if truth else 1.0)
