"""`cp.curate`: audit a list of DSPy examples in one call and get a `CurationReport`.

The steps, in order: read and check the examples (`data.py`); encode their inputs (`encode.py`); duplicates and
leaks with SemHash (`similarity.py`); label issues with cleanlab and, with `program=`, the program's own model
(`labels.py`, `likelihood.py`); outliers and a value per example on the neighbour graph (`neighbors.py`); class
imbalance. Each step becomes a `Check` whose threshold can move later without recomputing.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from compound.curate.data import Dataset, read_against, read_examples
from compound.curate.encode import CharNgramEncoder, make_encoder
from compound.curate.labels import (
    FREE_TEXT_THRESHOLD, IMBALANCE_THRESHOLD, LabelResult, categorical_issues, free_text_issues,
)
from compound.curate.neighbors import VALUE_THRESHOLD, NeighborGraph, dense_features, outlier_threshold
from compound.curate.report import KINDS, Check, CurationReport
from compound.curate.similarity import Duplicates, Leaks

# scikit-learn/cleanlab run their BLAS on one thread (torch, for program=, is left alone): on a busy 2-core machine, BLAS threads that wait for each
# other made TruncatedSVD 7x slower than one thread (measured while writing bench/curate.py).
NUMERIC_THREADS = 1
# How far below the starting threshold duplicates and leaks are computed, so `rethreshold` can also go down.
FLOOR_MARGIN = 0.1


def curate(
    examples: Sequence[Any],
    *,
    against: Sequence[Any] | dict[str, Sequence[Any]] | None = None,
    program: Any = None,
    fields: Sequence[str] | None = None,
    encoder: Any = None,
    thresholds: dict[str, float | None] | None = None,
) -> CurationReport:
    """Audit `examples` for duplicates, leaks of `against` splits, label issues, outliers, imbalance and value.

    `program`: the step whose labels these are (a `dspy.Predict` on a compound LM) — its model scores the labels;
    `fields`: the fields to audit (default: all; inputs from `with_inputs`); `encoder`: None (character n-grams,
    fast), "minilm" or any object with `encode(list[str])`; `thresholds`: starting {kind: threshold}.

    Example:
        >>> import compound as cp
        >>> triage = cp.zoo.tasks["triage"]
        >>> report = cp.curate(triage.train[:300], against={"dev": triage.dev})
        >>> report.summary()["flagged"]["leak"], len(report.clean()) <= 300
        (0, True)
    """
    from threadpoolctl import threadpool_limits

    started = time.perf_counter()
    scorer = None
    if program is not None:
        from compound.curate.likelihood import LabelScorer

        scorer = LabelScorer(program)
    data = read_examples(examples, fields=fields, signature=scorer.signature if scorer else None)
    splits = read_against(against, data.input_fields)
    thresholds = dict(thresholds or {})
    unknown = set(thresholds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown kinds in thresholds: {sorted(unknown)}; kinds are {list(KINDS)}")

    # 1) the program's model on the labels (torch keeps its own threads), before the scikit-learn steps
    from_model = {name: _model_scores(data, name, scorer) for name in data.label_fields} if scorer else {}
    with threadpool_limits(NUMERIC_THREADS, user_api="blas"):
        checks, notes, enc_name = _numeric_checks(data, splits, encoder, thresholds, from_model, scorer is not None)
    info = {
        "encoder": enc_name,
        "labels": notes,
        "against": {name: len(texts) for name, texts in splits.items()},
        "seconds": round(time.perf_counter() - started, 2),
    }
    return CurationReport(data.examples, data.texts, {n: c.values for n, c in data.labels.items()}, checks, info=info)


def _numeric_checks(data: Dataset, splits, encoder, thresholds, from_model, has_program):
    # 2) vectors of the inputs (the IDF of the default encoder is fitted on everything that is compared)
    enc = make_encoder(encoder)
    held_out = [text for texts in splits.values() for text in texts]
    enc.fit(data.texts + held_out)
    features = enc.transform(data.texts)
    vectors = features.toarray().astype(np.float32) if hasattr(features, "toarray") else features
    same = enc.duplicate_threshold

    checks = [_duplicates(data, vectors, thresholds.get("duplicate", same))]
    if splits:
        checks.append(_leaks(data, splits, enc.encode(held_out), vectors, thresholds.get("leak", same)))
    labels = {name: _label_result(data, name, features, from_model.get(name)) for name in data.label_fields}
    unchecked = "free text: not checked (" + ("not an output of the program)" if has_program else "pass program= to score it)")
    notes = {name: result.source if result else unchecked for name, result in labels.items()}
    if any(labels.values()):
        checks.append(_label_check(data, labels, thresholds.get("label")))

    # 3) the neighbour graph: outliers always, a value per example when there is a small label set
    graph = NeighborGraph(dense_features(features))
    checks.append(_outliers(graph, thresholds.get("outlier")))
    categorical = [data.labels[name] for name in data.label_fields if data.labels[name].categorical]
    if categorical:
        checks.append(_low_value(graph, categorical, thresholds.get("low_value", VALUE_THRESHOLD)))
        checks.append(_imbalance(categorical, thresholds.get("imbalance", IMBALANCE_THRESHOLD)))
    return checks, notes, type(getattr(enc, "model", enc)).__name__


# ---- one function per check ------------------------------------------------------------------------------------
def _duplicates(data: Dataset, vectors: np.ndarray, threshold: float) -> Check:
    dups = Duplicates(data.texts, vectors, floor=round(threshold - FLOOR_MARGIN, 4))
    score = np.full(len(data), np.nan)
    for i, (_, similarity) in dups.flagged(dups.floor).items():
        score[i] = similarity

    def flag_at(t: float | None) -> dict[int, str]:
        out = {}
        for i, (j, similarity) in dups.flagged(t).items():
            exact = data.texts[i] == data.texts[j]
            reason = f"exact copy of #{j}" if exact else f"near copy of #{j} (similarity {similarity:.2f})"
            differ = [f"{name} {col.values[i]!r} vs {col.values[j]!r}" for name, col in data.labels.items()
                      if col.values[i] != col.values[j]]
            out[i] = reason + (f"; labels differ: {', '.join(differ)}" if differ else "")
        return out

    return Check("duplicate", score, threshold, "similarity >= {t}", _required(flag_at, "duplicate"))


def _leaks(data: Dataset, splits: dict[str, list[str]], held_out_vectors: np.ndarray, vectors: np.ndarray,
           threshold: float) -> Check:
    leaks = Leaks(splits, held_out_vectors, vectors, floor=round(threshold - FLOOR_MARGIN, 4))

    def flag_at(t: float | None) -> dict[int, str]:
        out = {}
        for i, ((split, j), similarity) in leaks.flagged(t).items():
            same = data.texts[i] == splits[split][j]
            out[i] = f"{'is' if same else 'nearly'} {split} #{j}" + ("" if same else f" (similarity {similarity:.2f})")
        return out

    return Check("leak", leaks.score, threshold, "similarity >= {t}", _required(flag_at, "leak"))


def _model_scores(data: Dataset, name: str, scorer) -> np.ndarray | LabelResult | None:
    """Small label set: (N, K) class probabilities; free text: the likelihood-ratio result; None: not an output."""
    column = data.labels[name]
    if name not in scorer.signature.output_fields:
        return None
    if column.categorical:
        return scorer.class_probs(data.examples, name, column.classes)
    own = scorer.answers(data.examples, name)
    inputs, given = zip(*(scorer.split(ex) for ex in data.examples))
    given_logp = scorer.logprobs(inputs, given)
    own_logp = np.full(len(data), np.nan)
    answered = [i for i, o in enumerate(own) if o is not None]
    own_logp[answered] = scorer.logprobs([inputs[i] for i in answered],
                                         [{**given[i], name: own[i]} for i in answered])
    return free_text_issues(given_logp, own_logp, own, column.values)


def _label_result(data: Dataset, name: str, features, from_model) -> LabelResult | None:
    column = data.labels[name]
    if column.categorical:
        return categorical_issues(column.values, features, from_model)
    return from_model  # free text: only the program's model can score it


def _label_check(data: Dataset, results: dict[str, LabelResult | None], threshold: float | None) -> Check:
    scored = {name: r for name, r in results.items() if r is not None}
    score = np.nanmin(np.vstack([r.quality for r in scored.values()]), axis=0)

    def flag_at(t: float | None) -> dict[int, str]:
        out: dict[int, list[str]] = {}
        for name, r in scored.items():
            if t is not None:
                flags = np.nan_to_num(r.quality, nan=1.0) < t
            else:
                flags = r.flag
            for i in np.flatnonzero(flags):
                given = data.labels[name].values[i]
                if data.labels[name].categorical:
                    why = f"{name} {given!r}, but the {r.source} says {r.predicted[i]!r} (p={r.confidence[i]:.2f})"
                else:
                    why = f"{name} {given!r}, but the program's model answers {r.predicted[i]!r} " \
                          f"(p(given)/p(own) = {r.quality[i]:.2g})"
                out.setdefault(int(i), []).append(why)
        return {i: "; ".join(reasons) for i, reasons in out.items()}

    free = any(not data.labels[name].categorical for name in scored)
    when_none = "cleanlab confident learning" + (f"; free text: quality < {FREE_TEXT_THRESHOLD}" if free else "")
    return Check("label", score, threshold, "label quality < {t}", flag_at, when_none=when_none,
                 note=", ".join(f"{name}: {r.source}" for name, r in scored.items()))


def _outliers(graph: NeighborGraph, threshold: float | None) -> Check:
    scores = graph.outlier_scores()
    start = outlier_threshold(scores) if threshold is None else threshold

    def flag_at(t: float | None) -> dict[int, str]:
        t = start if t is None else t
        return {int(i): f"far from every other example (outlier score {scores[i]:.2f})"
                for i in np.flatnonzero(scores < t)}

    return Check("outlier", scores, round(start, 4), "outlier score < {t}", flag_at,
                 note="cleanlab OutOfDistribution on the k-nearest-neighbour graph")


def _low_value(graph: NeighborGraph, columns, threshold: float) -> Check:
    values = np.min(np.vstack([graph.values(column.values) for column in columns]), axis=0)

    def flag_at(t: float | None) -> dict[int, str]:
        return {int(i): f"kNN data value {values[i]:.4f} (< 0.5: its neighbours mostly carry other labels)"
                for i in np.flatnonzero(values < t)}

    return Check("low_value", values, threshold, "value < {t}", _required(flag_at, "low_value"),
                 note="cleanlab kNN Data Shapley; 0.5 is neutral")


def _imbalance(columns, threshold: float) -> Check:
    # per column: each example's class share relative to an even share (1.0 = as common as it would be if balanced)
    shares = {}
    for column in columns:
        counts = Counter(column.values)
        even = len(column.values) / len(counts)
        shares[column.name] = np.array([counts[v] / even for v in column.values])
    score = np.min(np.vstack(list(shares.values())), axis=0)

    def flag_at(t: float | None) -> dict[int, str]:
        out = {}
        for column in columns:
            for i in np.flatnonzero(shares[column.name] < t):
                value = column.values[i]
                out[int(i)] = f"{column.name} {value!r} is {shares[column.name][i]:.0%} of an even share"
        return out

    return Check("imbalance", score, threshold, "class share < {t} of even", _required(flag_at, "imbalance"),
                 note="dataset-level: not dropped by default")


def _required(flag_at, kind: str):
    """Checks whose threshold cannot be None (there is no other rule to fall back on)."""

    def checked(t: float | None) -> dict[int, str]:
        if t is None or not isinstance(t, (int, float)) or isinstance(t, bool):
            raise ValueError(f"the {kind} threshold must be a number, got {t!r}")
        return flag_at(float(t))

    return checked
