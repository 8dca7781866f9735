"""compound.route — learn which model each call of a DSPy module should go to, and route it there.

    data = cp.route.collect(program.extract, [tiny, small], trainset, metric=task.metric)  # every model, every example
    router = cp.route.KNNRouter(k=16).fit(data)                 # scikit-learn estimator on local embeddings
    report = cp.route.evaluate(router, cp.route.collect(program.extract, [tiny, small], dev, metric=task.metric))
    program.extract = cp.Routed(program.extract, router, [tiny, small], threshold=report.threshold_for(quality=0.95))

Routers (scikit-learn estimators: `fit`, `predict_scores`, `route(X, threshold)`, `get_params`/`set_params`/`clone`):
`KNNRouter`, `LogisticRouter`, `MLPRouter`, `MFRouter` (RouteLLM's matrix factorization), `CascadeRouter` (cheapest
first, defer on low confidence) and the baselines `RandomRouter` and `OracleRouter`. Metrics (`compound.route.metrics`):
APGR, CPT(50%)/CPT(80%), AIQ, deferral AUC.

Example:
    >>> import numpy as np, compound as cp
    >>> router = cp.route.KNNRouter(k=1).fit(np.eye(2), [[1.0, 0.0], [1.0, 1.0]], costs=[1, 2])
    >>> router.route(np.eye(2), threshold=0.5).tolist()
    [0, 0]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from compound._lazy import lazy_names

_LAZY = {
    "collect": "compound.route.collector",
    "RoutingData": "compound.route.data",
    "Router": "compound.route.base",
    "load_router": "compound.route.base",
    "KNNRouter": "compound.route.knn",
    "LogisticRouter": "compound.route.linear",
    "MLPRouter": "compound.route.linear",
    "MFRouter": "compound.route.mf",
    "CascadeRouter": "compound.route.cascade",
    "RandomRouter": "compound.route.baselines",
    "OracleRouter": "compound.route.baselines",
    "evaluate": "compound.route.report",
    "RoutingReport": "compound.route.report",
    "Routed": "compound.route.routed",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from compound.route.base import Router, load_router
    from compound.route.baselines import OracleRouter, RandomRouter
    from compound.route.cascade import CascadeRouter
    from compound.route.collector import collect
    from compound.route.data import RoutingData
    from compound.route.knn import KNNRouter
    from compound.route.linear import LogisticRouter, MLPRouter
    from compound.route.mf import MFRouter
    from compound.route.report import RoutingReport, evaluate
    from compound.route.routed import Routed


__getattr__, __dir__ = lazy_names(__name__, _LAZY, __all__)
