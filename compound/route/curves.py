"""Cost–quality curves: what a router (or a baseline) reaches on RoutingData as its threshold sweeps.

A `Curve` holds one point per threshold: mean cost per query, normalized cost x (0 = the cheapest model alone,
1 = the most expensive alone), mean quality, each model's share of the answers, and the share deferred past the
cheapest model. Its metrics are the anchors' (`compound.route.metrics`).

Example:
    >>> import numpy as np
    >>> Y, C = np.array([[1, 1], [0, 1], [0, 0], [1, 0]]), np.tile([1.0, 2.0], (4, 1))
    >>> oracle = oracle_curve(Y, C)
    >>> round(oracle.at(0.5)["quality"], 2), round(oracle.at(0.5)["x"], 2)   # each query to the cheapest right model
    (0.75, 0.25)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from compound.route import metrics
from compound.route.base import breakpoints, choose
from compound.route.cascade import cascade


@dataclass
class Curve:
    """The points a router reaches, sorted by cost; `choices[i]` is the (n,) model index per query at point i."""

    name: str
    kind: str  # "router", "cascade", "random" or "oracle"
    thresholds: np.ndarray
    cost: np.ndarray
    x: np.ndarray
    quality: np.ndarray
    shares: np.ndarray  # (points, k)
    deferral: np.ndarray
    choices: list[np.ndarray] = field(repr=False, default_factory=list)

    def at(self, threshold: float) -> dict[str, Any]:
        """The point whose threshold is nearest to `threshold`."""
        i = int(np.argmin(np.abs(self.thresholds - threshold)))
        return self.point(i)

    def point(self, i: int) -> dict[str, Any]:
        return {"threshold": float(self.thresholds[i]), "cost": float(self.cost[i]), "x": float(self.x[i]),
                "quality": float(self.quality[i]), "shares": self.shares[i].tolist(),
                "deferral": float(self.deferral[i]), "index": i}

    def metrics(self, weak: float, strong: float, x_max: float = 1.0) -> dict[str, float | None]:
        """APGR, CPT(50%), CPT(80%), AIQ and deferral AUC (None where undefined, e.g. equal weak and strong)."""
        spans = self.x.min() <= 0 + 1e-12 and self.x.max() >= 1 - 1e-12
        gap = strong != weak
        defer_spans = self.deferral.min() <= 1e-12 and self.deferral.max() >= 1 - 1e-12
        return {
            "apgr": metrics.apgr(self.x, self.quality, weak, strong) if spans and gap else None,
            "cpt50": metrics.cpt(self.x, self.quality, weak, strong, 0.5) if gap else None,
            "cpt80": metrics.cpt(self.x, self.quality, weak, strong, 0.8) if gap else None,
            "aiq": metrics.aiq(self.x, self.quality, x_max),
            "deferral_auc": metrics.deferral_auc(self.deferral, self.quality) if defer_spans else None,
        }


def _normalizer(C: np.ndarray):
    mean = C.mean(axis=0)
    cheap, dear = mean.min(), mean.max()
    span = dear - cheap if dear > cheap else 1.0
    return lambda cost: (np.asarray(cost, float) - cheap) / span


def _build(name, kind, thresholds, choices, tried, Y, C, extra_cost=None) -> Curve:
    n, k = Y.shape
    rows = np.arange(n)
    cheapest = int(np.argmin(C.mean(axis=0)))
    normalize = _normalizer(C)
    costs, quality, shares, deferral = [], [], [], []
    for choice, used in zip(choices, tried):
        paid = C * used + (extra_cost * used if extra_cost is not None else 0.0)
        costs.append(paid.sum(axis=1).mean())
        quality.append(Y[rows, choice].mean())
        shares.append(np.bincount(choice, minlength=k) / n)
        deferral.append(float(np.mean(choice != cheapest)) if kind != "cascade" else float(np.mean(used.sum(1) > 1)))
    costs, quality = np.array(costs), np.array(quality)
    order = np.lexsort((-quality, costs))
    return Curve(name, kind, np.asarray(thresholds, float)[order], costs[order], normalize(costs[order]),
                 quality[order], np.array(shares)[order], np.array(deferral)[order], [choices[i] for i in order])


def scored_curve(name: str, scores, Y, C, costs, kind: str = "router") -> Curve:
    """The curve of a router that predicted `scores` (n, k), routing with the shared rule over `costs` (k,)."""
    scores = np.asarray(scores, float)
    thresholds = breakpoints(scores, costs)
    choices = [choose(scores, costs, t) for t in thresholds]
    k = scores.shape[1]
    tried = [np.eye(k, dtype=bool)[c] for c in choices]
    return _build(name, kind, thresholds, choices, tried, np.asarray(Y, float), np.asarray(C, float))


def cascade_curve(name: str, confidence, Y, C, costs, extra_cost=None) -> Curve:
    """The curve of a cascade deferring on `confidence` (n, k); it pays for every model it tried, and for measuring
    the confidence (`extra_cost`, (n, k)) of every model it tried but the last, whose answer it keeps unchecked."""
    confidence = np.asarray(confidence, float)
    order = np.argsort(np.asarray(costs, float), kind="stable")
    if extra_cost is not None:
        extra_cost = np.array(extra_cost, float)
        extra_cost[:, order[-1]] = 0.0
    values = np.unique(confidence[:, order[:-1]][np.isfinite(confidence[:, order[:-1]])])
    mids = (values[1:] + values[:-1]) / 2 if len(values) > 1 else np.array([])
    thresholds = np.concatenate([[values.min() - 1.0 if len(values) else -1.0], mids,
                                 [values.max() + 1.0 if len(values) else 2.0]])
    confidence = np.nan_to_num(confidence, nan=-np.inf)  # a missing confidence always defers
    runs = [cascade(confidence, costs, t) for t in thresholds]
    return _build(name, "cascade", thresholds, [r[0] for r in runs], [r[1] for r in runs],
                  np.asarray(Y, float), np.asarray(C, float), extra_cost)


def oracle_curve(Y, C) -> Curve:
    """The oracle: the rule applied to the true scores (threshold in (0, 1): the cheapest model that is right)."""
    return scored_curve("oracle", Y, Y, C, np.asarray(C, float).mean(axis=0), kind="oracle")


def random_curve(Y, C, steps: int = 101) -> Curve:
    """The random router in expectation: the cheapest model with probability 1-p, the most expensive with p."""
    Y, C = np.asarray(Y, float), np.asarray(C, float)
    mean = C.mean(axis=0)
    cheap, dear = int(np.argmin(mean)), int(np.argmax(mean))
    p = np.linspace(0, 1, steps)
    k = Y.shape[1]
    shares = np.zeros((steps, k))
    shares[:, cheap] += 1 - p
    shares[:, dear] += p
    cost = (1 - p) * mean[cheap] + p * mean[dear]
    quality = (1 - p) * Y[:, cheap].mean() + p * Y[:, dear].mean()
    return Curve("random", "random", 1 - p, cost, _normalizer(C)(cost), quality, shares, p, [])
