"""What every router shares: scikit-learn's estimator contract, the routing rule, and files that cannot run code.

A router predicts, for each query, every candidate model's score (`predict_scores(X) -> (n, k)`), and routes with
one rule for any number of models (RouterBench's willingness to pay):

    route_i = argmax_j  predicted_score[i, j] - threshold * relative_cost[j]

where relative_cost is 0 for the cheapest model and 1 for the most expensive (ties go to the cheaper model). So
`threshold` is how much predicted score (on the metric's 0..1 scale) the most expensive model must gain over the
cheapest to be worth calling: 0 picks the best predicted model, 1 (or more) always the cheapest, negative values pay
for cost without a predicted gain. With two models this is RouteLLM's rule: the strong model when its predicted
advantage exceeds the threshold.

Files: `router.save(path)` writes one JSON file (hyperparameters, model names, costs) whose fitted arrays are a
base64 safetensors blob; `load_router(path)` builds only compound's router classes, so a file naming any other class
is refused instead of run.

Example:
    >>> import numpy as np
    >>> scores = np.array([[0.9, 0.95], [0.1, 0.8]])        # two queries, a cheap and an expensive model
    >>> choose(scores, costs=[1.0, 3.0], threshold=0.2).tolist()
    [0, 1]
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

FORMAT = "compound.route.Router/1"


def relative_costs(costs) -> np.ndarray:
    """Costs rescaled to [0, 1]: 0 for the cheapest model, 1 for the most expensive (all 0 when equal)."""
    costs = np.asarray(costs, float)
    span = costs.max() - costs.min()
    return (costs - costs.min()) / span if span > 0 else np.zeros_like(costs)


def choose(scores, costs, threshold: float) -> np.ndarray:
    """The routing rule: per row, argmax of score - threshold * relative cost; ties go to the cheaper model."""
    scores = np.asarray(scores, float)
    rel = relative_costs(costs)
    order = np.argsort(rel, kind="stable")  # cheapest first, so argmax's first maximum is the cheapest tie
    value = scores[:, order] - threshold * rel[order]
    return order[np.argmax(value, axis=1)]


def breakpoints(scores, costs, limit: int = 512) -> np.ndarray:
    """Thresholds between which `choose` changes for some row, as midpoints (+ both extremes), at most `limit`."""
    scores = np.asarray(scores, float)
    rel = relative_costs(costs)
    cuts = []
    for a in range(len(rel)):
        for b in range(a + 1, len(rel)):
            if rel[a] != rel[b]:
                cuts.append((scores[:, a] - scores[:, b]) / (rel[a] - rel[b]))
    values = np.unique(np.concatenate(cuts)) if cuts else np.array([0.0])
    values = values[np.isfinite(values)]
    if len(values) > limit:
        values = np.unique(np.quantile(values, np.linspace(0, 1, limit)))
    mids = (values[1:] + values[:-1]) / 2
    return np.concatenate([[values[0] - 1.0], mids, [values[-1] + 1.0]]) if len(values) else np.array([0.0])


class Router(RegressorMixin, BaseEstimator):
    """Base of compound's routers. Subclasses implement `_fit_features(Z, Y)` and `_predict_features(Z)`.

    Attributes (after `fit`):
        models_: the candidates' names (from RoutingData, `models=`, or model_0..).
        costs_: (k,) cost per call of each model (without costs: the listed order, cheapest first).
        n_models_: k.
        n_features_in_: the width of the embeddings (or numeric features) it was fitted on.
    """

    takes_text = True  # X may be query texts, embedded with `self.encoder`

    # ---- features --------------------------------------------------------------------------------------------
    def _features(self, X, *, reset: bool) -> np.ndarray:
        from compound.route.data import RoutingData

        if isinstance(X, RoutingData):
            X = self._data_features(X)
        if isinstance(X, str):
            raise TypeError("`X` is one string; pass a list of queries: router.route([query])")
        kind = getattr(getattr(X, "dtype", None), "kind", "f")
        texts = X.tolist() if hasattr(X, "tolist") and kind in "OUS" else X  # a pandas Series or array of texts
        if self.takes_text and isinstance(texts, (list, tuple)) and texts and all(isinstance(x, str) for x in texts):
            from compound.route.embed import encode

            X = encode(texts, getattr(self, "encoder", None) or "all-MiniLM-L6-v2")
        return validate_data(self, X, reset=reset, dtype=np.float64)

    # ---- scikit-learn contract -------------------------------------------------------------------------------
    def fit(self, X, Y=None, costs=None, models=None):
        """Fit on RoutingData (`fit(data)`), or on X (texts or an (n, d) matrix) and Y, the (n, k) score matrix.

        `costs` (k,) is each model's cost per call; `models` their names. Returns self.
        """
        from compound.route.data import RoutingData

        if isinstance(X, RoutingData):
            if Y is not None:
                raise ValueError("pass either RoutingData alone or X and Y, not both")
            data = X
            X, Y = self._data_features(data), data.scores
            costs = data.costs if costs is None else costs
            models = data.models if models is None else models
        if Y is None:
            raise ValueError(f"{type(self).__name__}.fit requires y to be passed, but the target y is None: pass the "
                             "(n, k) scores, fit(X, Y), or RoutingData, fit(routing_data)")
        Z = self._features(X, reset=True)
        Y = np.asarray(Y, dtype=float)
        self.single_output_ = Y.ndim == 1
        Y = Y.reshape(-1, 1) if Y.ndim == 1 else Y
        if Y.ndim != 2 or len(Y) != len(Z):
            raise ValueError(f"`Y` must be (n, k) scores with n = {len(Z)} rows, got shape {Y.shape}")
        if not np.isfinite(Y).all():
            raise ValueError("`Y` has NaN or infinite scores; every model needs a score on every example")
        k = Y.shape[1]
        self.n_models_ = k
        self.models_ = [str(m) for m in models] if models is not None else [f"model_{j}" for j in range(k)]
        self.costs_ = np.asarray(costs, float) if costs is not None else np.arange(1.0, k + 1)
        if len(self.models_) != k or self.costs_.shape != (k,):
            raise ValueError(f"{k} score columns need {k} model names and costs; got {len(self.models_)} names "
                             f"and costs of shape {self.costs_.shape}")
        with _one_blas_thread():
            self._fit_features(Z, Y)
        return self

    def _data_features(self, data):
        """What this router reads from RoutingData: the query texts (a cascade reads confidences)."""
        return data.queries

    def predict_scores(self, X) -> np.ndarray:
        """(n, k) predicted score of every model on every query."""
        check_is_fitted(self, "models_")
        return np.asarray(self._predict_features(self._features(X, reset=False)), float)

    def predict(self, X) -> np.ndarray:
        """Same as `predict_scores` (1-D when fitted on a single score column), for scikit-learn's tools."""
        scores = self.predict_scores(X)
        return scores.ravel() if self.single_output_ else scores

    def route(self, X, threshold: float = 0.0) -> np.ndarray:
        """(n,) index of the model each query goes to under `threshold` (see the module docstring)."""
        return choose(self.predict_scores(X), self.costs_, threshold)

    def route_names(self, X, threshold: float = 0.0) -> list[str]:
        """Like `route`, as model names."""
        return [self.models_[j] for j in self.route(X, threshold)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags

    # ---- persistence -----------------------------------------------------------------------------------------
    def _fitted_arrays(self) -> dict[str, np.ndarray]:
        """The fitted arrays this router needs to predict (subclasses)."""
        return {}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        """Rebuild fitted state from `_fitted_arrays()` (subclasses)."""

    def to_state(self) -> dict[str, Any]:
        """The router as a JSON-able dict: class name, hyperparameters, fitted names/costs, arrays as safetensors."""
        from safetensors.numpy import save

        state: dict[str, Any] = {"format": FORMAT, "class": type(self).__name__,
                                 "params": json.loads(json.dumps(self.get_params(deep=False), default=_no_objects))}
        if hasattr(self, "models_"):
            arrays = {name: np.ascontiguousarray(a) for name, a in self._fitted_arrays().items()}
            state["fitted"] = {"models": self.models_, "costs": self.costs_.tolist(),
                               "n_features_in": int(getattr(self, "n_features_in_", 0)),
                               "single_output": bool(self.single_output_),
                               "arrays": base64.b64encode(save(arrays)).decode() if arrays else ""}
        return state

    def save(self, path: str | os.PathLike) -> Path:
        """Write the router to a JSON file (atomically). Load it with `cp.route.load_router(path)`."""
        from compound.route.data import write_json

        return write_json(path, self.to_state())


def _one_blas_thread():
    """Routers' matrices are small: one BLAS thread beats several (measured 5x on a busy 2-core machine, where
    spinning BLAS threads fight the engines for cores)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _no_objects(value: Any) -> Any:
    raise TypeError(f"router parameter {value!r} cannot be saved as JSON; use names (e.g. encoder='<model id>')")


def router_classes() -> dict[str, type[Router]]:
    """compound's router classes by name: the only classes a router file may name."""
    from compound.route.baselines import RandomRouter
    from compound.route.cascade import CascadeRouter
    from compound.route.knn import KNNRouter
    from compound.route.linear import LogisticRouter, MLPRouter
    from compound.route.mf import MFRouter

    return {cls.__name__: cls for cls in (KNNRouter, LogisticRouter, MLPRouter, MFRouter, CascadeRouter, RandomRouter)}


def from_state(state: dict[str, Any]) -> Router:
    """Rebuild a router from `to_state()`; only compound's router classes are built, anything else is refused."""
    routers = router_classes()
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"not a compound router (format {state.get('format') if isinstance(state, dict) else None!r},"
                         f" expected {FORMAT!r})")
    name = state.get("class")
    if name not in routers:
        raise ValueError(f"refusing to build router class {name!r}: only compound's routers load "
                         f"({', '.join(sorted(routers))}), since a file must never choose code to run")
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in state.get("params", {}).items()}  # JSON: no tuples
    router = routers[name](**params)
    fitted = state.get("fitted")
    if fitted:
        from safetensors.numpy import load

        router.models_ = list(fitted["models"])
        router.costs_ = np.asarray(fitted["costs"], float)
        router.n_models_ = len(router.models_)
        router.single_output_ = bool(fitted.get("single_output", False))
        if fitted.get("n_features_in"):
            router.n_features_in_ = int(fitted["n_features_in"])
        router._restore(load(base64.b64decode(fitted["arrays"])) if fitted.get("arrays") else {})
    return router


def load_router(path: str | os.PathLike) -> Router:
    """Load a router saved with `router.save(path)` (JSON + safetensors: nothing in the file can run code).

    Example:
        >>> import numpy as np, tempfile, os, compound as cp
        >>> router = cp.route.KNNRouter(k=1).fit(np.eye(2), [[1.0, 0.0], [0.0, 1.0]])
        >>> path = router.save(os.path.join(tempfile.mkdtemp(), "router.json"))
        >>> cp.route.load_router(path).route(np.eye(2)).tolist()
        [0, 1]
    """
    try:
        state = json.loads(Path(path).read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a router file (not JSON: {exc}); routers are saved with router.save()")
    return from_state(state)
