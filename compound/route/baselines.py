"""The baselines every router is judged against: `RandomRouter` and `OracleRouter`.

Example:
    >>> import numpy as np
    >>> Y = np.array([[1, 1], [0, 1], [0, 0]])
    >>> OracleRouter().fit(["a", "b", "c"], Y).route(["a", "b", "c"], threshold=0.5).tolist()
    [0, 1, 0]
"""

from __future__ import annotations

import hashlib

import numpy as np

from compound.route.base import Router


def _keys(X) -> list[str]:
    """A stable key per query: the text itself, or a hash of a numeric row."""
    if isinstance(X, (list, tuple)) and all(isinstance(x, str) for x in X):
        return list(X)
    rows = np.asarray(X, dtype=np.float64)
    if rows.ndim != 2:
        raise ValueError(f"`X` must be query texts or a 2-D array, got shape {rows.shape}")
    return [hashlib.sha256(row.tobytes()).hexdigest() for row in rows]


class _KeyedRouter(Router):
    """Routers that look at queries only as keys: no embeddings needed."""

    def _features(self, X, *, reset: bool):
        from compound.route.data import RoutingData

        if isinstance(X, RoutingData):
            X = X.queries
        return _keys(X)


class RandomRouter(_KeyedRouter):
    """Predicts uniform random scores, fixed per query (a hash of `random_state` and the query), so the same query
    always goes to the same model. Its cost-quality curve is the straight line between the models: APGR about 0.5.

    Args:
        random_state: seed.
    """

    def __init__(self, random_state: int = 0):
        self.random_state = random_state

    def _fit_features(self, keys, Y: np.ndarray) -> None:
        pass

    def _predict_features(self, keys) -> np.ndarray:
        rows = []
        for key in keys:
            seed = int.from_bytes(hashlib.sha256(f"{self.random_state}/{key}".encode()).digest()[:8], "little")
            rows.append(np.random.default_rng(seed).uniform(size=self.n_models_))
        return np.array(rows).reshape(len(keys), self.n_models_)


class OracleRouter(_KeyedRouter):
    """Knows every model's true score on the queries it was fitted on (and nothing else): routes each query to the
    cheapest model that gets it right. The upper bound of routing; `cp.route.evaluate` computes it for you.

    Attributes:
        scores_: {query key: (k,) true scores}.
    """

    def _fit_features(self, keys, Y: np.ndarray) -> None:
        self.scores_ = dict(zip(keys, Y))

    def _predict_features(self, keys) -> np.ndarray:
        missing = [k for k in keys if k not in self.scores_]
        if missing:
            raise ValueError(f"the oracle knows only the queries it was fitted on; {len(missing)} are new "
                             f"(e.g. {missing[0][:60]!r}). Fit it on the data you evaluate.")
        return np.array([self.scores_[k] for k in keys]).reshape(len(keys), self.n_models_)

    def _fitted_arrays(self) -> dict[str, np.ndarray]:
        raise TypeError("an OracleRouter memorizes its data and is not saved; save the RoutingData instead")
