"""Routing metrics, exactly as the anchors define them (RouteLLM's APGR and CPT, RouterBench's NDCH and AIQ, cascades'
deferral curve), on plain numpy arrays.

Every router is judged by the cost–quality points it reaches as its threshold sweeps. Costs are *normalized*:
x = (cost - cost of the cheapest model alone) / (cost of the most expensive model alone - that), so x=0 is "always
the cheapest model" and x=1 "always the most expensive one". With two models and a fixed cost per call, x is exactly
RouteLLM's fraction of strong-model calls. Quality is the mean metric score of the routed answers.

Example:
    >>> import numpy as np
    >>> x, q = np.array([0.0, 0.5, 1.0]), np.array([0.5, 0.9, 1.0])
    >>> round(apgr(x, q, weak=0.5, strong=1.0), 3)   # (AUC - weak) / (strong - weak)
    0.65
    >>> cpt(x, q, weak=0.5, strong=1.0, level=0.5)   # strong-call share needed to recover half the gap
    0.3125
"""

from __future__ import annotations

import numpy as np

__all__ = ["aiq", "apgr", "cpt", "deferral_auc", "ndch", "pgr", "trapezoid"]


def trapezoid(x, y) -> float:
    """Area under the piecewise-linear curve through (x, y), points sorted by x first.

    Example:
        >>> trapezoid([0, 1], [0, 1])
        0.5
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))


def pgr(quality, weak: float, strong: float):
    """Performance Gap Recovered: (quality - weak) / (strong - weak).

    Example:
        >>> pgr(0.75, weak=0.5, strong=1.0)
        0.5
    """
    if strong == weak:
        raise ValueError(f"PGR needs two models of different quality; both score {weak}")
    gap = (np.asarray(quality, float) - weak) / (strong - weak)
    return float(gap) if gap.ndim == 0 else gap


def _on_unit_interval(x, q) -> tuple[np.ndarray, np.ndarray]:
    """The curve restricted to x in [0, 1], interpolated at the ends, sorted by x."""
    x, q = np.asarray(x, float), np.asarray(q, float)
    order = np.lexsort((q, x))
    x, q = x[order], q[order]
    inside = (x >= 0) & (x <= 1)
    ends = [e for e in (0.0, 1.0) if x.min() <= e <= x.max() and not np.any(x[inside] == e)]
    x_all = np.concatenate([x[inside], ends])
    q_all = np.concatenate([q[inside], [np.interp(e, x, q) for e in ends]])
    order = np.lexsort((q_all, x_all))
    return x_all[order], q_all[order]


def apgr(x, quality, weak: float, strong: float) -> float:
    """Average PGR, RouteLLM's code: (AUC_router - AUC_weak) / (AUC_strong - AUC_weak) over x in [0, 1].

    `x` is the normalized cost (two models: the strong-call fraction) of each router point and `quality` its score;
    the curve must reach x=0 and x=1 (every router does at its extreme thresholds). A random router scores 0.5.

    Example:
        >>> round(apgr([0, 1], [0.2, 0.6], weak=0.2, strong=0.6), 6)   # the straight line: random routing
        0.5
    """
    x, q = _on_unit_interval(x, quality)
    if x[0] > 0 or x[-1] < 1:
        raise ValueError(f"the curve must span the whole cost range [0, 1]; it spans [{x[0]:.3g}, {x[-1]:.3g}]")
    if strong == weak:
        raise ValueError(f"APGR needs two models of different quality; both score {weak}")
    return float((trapezoid(x, q) - weak) / (strong - weak))


def cpt(x, quality, weak: float, strong: float, level: float) -> float | None:
    """Call-Performance Threshold: the least x at which the curve reaches PGR = `level` (e.g. 0.5 for CPT(50%)).

    Linear interpolation between consecutive points, as RouteLLM's "50% qual" column; None when never reached.

    Example:
        >>> cpt([0, 0.5, 1], [0.0, 0.8, 1.0], weak=0.0, strong=1.0, level=0.8)
        0.5
    """
    x, q = np.asarray(x, float), np.asarray(quality, float)
    order = np.lexsort((-q, x))
    x, q = x[order], q[order]
    target = weak + level * (strong - weak)
    if q[0] >= target:
        return float(max(x[0], 0.0))
    for i in range(1, len(x)):
        if q[i] >= target:
            x0, x1, q0, q1 = x[i - 1], x[i], q[i - 1], q[i]
            return float(x0 + (x1 - x0) * (target - q0) / (q1 - q0)) if q1 != q0 else float(x1)
    return None


def ndch(x, quality) -> tuple[np.ndarray, np.ndarray]:
    """RouterBench's non-decreasing convex hull: the upper-left frontier of the points, quality never falling with cost.

    Any point on a hull segment is reachable by mixing the two configurations at its ends.

    Example:
        >>> hx, hq = ndch([0, 0.5, 0.6, 1], [0.2, 0.7, 0.6, 0.65])
        >>> hx.tolist(), hq.tolist()
        ([0.0, 0.5], [0.2, 0.7])
    """
    x, q = np.asarray(x, float), np.asarray(quality, float)
    order = np.lexsort((-q, x))
    hull: list[tuple[float, float]] = []
    for xi, qi in zip(x[order], q[order]):
        if hull and qi <= hull[-1][1]:
            continue  # costs more, not better: dominated
        # pop points that fall on or below the segment from the one before them to this point (upper hull)
        while len(hull) >= 2:
            (x1, q1), (x2, q2) = hull[-2], hull[-1]
            if (x2 - x1) * (qi - q1) - (q2 - q1) * (xi - x1) >= 0:
                hull.pop()
            else:
                break
        hull.append((float(xi), float(qi)))
    hx, hq = zip(*hull)
    return np.array(hx), np.array(hq)


def aiq(x, quality, x_max: float = 1.0) -> float:
    """Average Improvement in Quality: mean of the NDCH over normalized cost [0, x_max], the hull extended flat.

    RouterBench extends every hull flat to the largest cost seen and divides the area by it; pass that cost as
    `x_max` when comparing routers that can cost more than the most expensive model alone (cascades). Below a
    router's cheapest point it reaches nothing, so that stretch adds no area.

    Example:
        >>> round(aiq([0, 1], [0.2, 0.6]), 6)
        0.4
        >>> round(aiq([0, 0.5, 1], [0.2, 0.6, 0.6]), 6)   # reaches the top quality at half the cost
        0.5
    """
    hx, hq = ndch(x, quality)
    end = np.interp(x_max, hx, hq)  # np.interp holds the last value flat past the hull's end
    keep = hx < x_max
    return trapezoid(np.append(hx[keep], x_max), np.append(hq[keep], end)) / x_max


def deferral_auc(deferral_rate, quality) -> float:
    """Area under a cascade's deferral curve: quality against the share of queries the first model defers, on [0, 1].

    Example:
        >>> round(deferral_auc([0, 0.5, 1], [0.4, 0.8, 0.8]), 6)
        0.7
    """
    x, q = _on_unit_interval(deferral_rate, quality)
    if x[0] > 0 or x[-1] < 1:
        raise ValueError(f"the deferral curve must span [0, 1]; it spans [{x[0]:.3g}, {x[-1]:.3g}]")
    return trapezoid(x, q)
