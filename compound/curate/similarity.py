"""Duplicates within a set and leaks of other splits into it, found with SemHash over precomputed vectors.

SemHash does the work (exact grouping, a nearest-neighbour index, greedy canonical selection): we run it once at a low "floor"
threshold and keep its result, so any threshold at or above the floor is a `rethreshold` away, with no new
encoding or index query. Positions travel through SemHash inside each record (`{"text": ..., "i": position}`).

Example:
    >>> import numpy as np
    >>> texts = ["refund please", "Refund please!", "the app crashes"]
    >>> vectors = np.array([[1, 0], [0.99, 0.14], [0, 1]], dtype=np.float32)
    >>> dups = Duplicates(texts, vectors, floor=0.8)
    >>> dups.flagged(0.9)   # position -> (canonical position, similarity)
    {1: (0, 0.9901)}
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np


# Up to this many indexed records SemHash searches exactly (vicinity's "basic" backend): the same answer on every run,
# and faster than the ANN index at these sizes (10,000 random 512-d vectors: 1.8 s exact vs 9.7 s usearch, whose
# multi-threaded graph build also makes near-threshold matches differ between runs). Beyond it, usearch.
EXACT_SEARCH_UP_TO = 50_000


def _semhash(records: list[dict], vectors: np.ndarray):
    from semhash import SemHash

    # The records' vectors are already computed; SemHash only needs a model for records it encodes itself.
    backend = "basic" if len(records) <= EXACT_SEARCH_UP_TO else "usearch"
    return SemHash.from_embeddings(vectors, records, model=None, columns=["text"], ann_backend=backend)


class Duplicates:
    """Near and exact duplicates inside one set; `flagged(t)` lists the copies SemHash drops at threshold `t`."""

    def __init__(self, texts: Sequence[str], vectors: np.ndarray, *, floor: float):
        self.floor = floor
        records = [{"text": text, "i": i} for i, text in enumerate(texts)]
        self._result = _semhash(records, vectors).self_deduplicate(threshold=floor)
        self._cache: dict[float, dict[int, tuple[int, float]]] = {}

    def flagged(self, threshold: float) -> dict[int, tuple[int, float]]:
        """{position of a dropped copy: (position of the kept example it copies, similarity)} at `threshold`."""
        if threshold < self.floor:
            raise ValueError(
                f"duplicate threshold {threshold} is below {self.floor}, the lowest this audit computed; "
                f"rerun cp.curate(..., thresholds={{'duplicate': {threshold}}})"
            )
        key = round(float(threshold), 6)
        if key not in self._cache:
            result = self._result
            if threshold > result.threshold:
                # rethreshold replaces the lists on the object it is called on; the floor result stays as it was.
                result = copy.copy(result)
                result.rethreshold(threshold)
            self._cache[key] = {
                dup.record["i"]: (dup.duplicate_of["i"], round(float(dup.score), 4)) for dup in result.filtered
            }
        return self._cache[key]


class Leaks:
    """For each example, its closest match among the `against` splits (SemHash's index over those splits)."""

    def __init__(self, splits: dict[str, list[str]], against_vectors: np.ndarray, vectors: np.ndarray, *,
                 floor: float):
        self.floor = floor
        records = [{"text": text, "split": name, "i": i} for name, texts in splits.items() for i, text in enumerate(texts)]
        n = len(vectors)
        self.score = np.full(n, np.nan)
        self.match: list[tuple[str, int] | None] = [None] * n
        if not records:
            return
        index = _semhash(records, against_vectors).index
        for i, (groups, scores) in enumerate(index.query_threshold(vectors, threshold=floor)):
            if len(groups):
                best = int(np.argmax(scores))
                hit = index.items[groups[best]][0]
                self.score[i] = round(float(scores[best]), 4)
                self.match[i] = (hit["split"], hit["i"])

    def flagged(self, threshold: float) -> dict[int, tuple[tuple[str, int], float]]:
        """{position: ((split, position in split), similarity)} for examples matching a held-out one at `threshold`."""
        if threshold < self.floor:
            raise ValueError(
                f"leak threshold {threshold} is below {self.floor}, the lowest this audit computed; "
                f"rerun cp.curate(..., thresholds={{'leak': {threshold}}})"
            )
        hits = np.flatnonzero(self.score >= threshold - 1e-9)
        return {int(i): (self.match[i], float(self.score[i])) for i in hits}

