"""`LogisticRouter` and `MLPRouter`: scikit-learn models that learn each candidate's score from query embeddings.

Example:
    >>> import numpy as np
    >>> X = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> Y = np.array([[1, 1], [1, 1], [0, 1], [0, 1]])
    >>> LogisticRouter(C=10.0).fit(X, Y).route([[0.0, 1.0], [1.0, 0.0]], threshold=0.5).tolist()
    [1, 0]
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPRegressor

from compound.route.base import Router


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


class LogisticRouter(Router):
    """One logistic regression per model: P(the model's answer scores >= 0.5 | query embedding).

    A model that is always (or never) right on the training data gets that constant probability.

    Args:
        C: inverse regularization strength, as in `sklearn.linear_model.LogisticRegression`.
        max_iter: solver iterations.
        encoder: sentence-transformers model for text queries (default: the zoo's offline MiniLM).

    Attributes:
        coef_: (k, d) weights; intercept_: (k,) biases (a constant model: zero weights, +-40 bias).
        n_iter_: the most solver iterations any of the k regressions took.
    """

    def __init__(self, C: float = 1.0, max_iter: int = 1000, encoder: str = "all-MiniLM-L6-v2"):
        self.C = C
        self.max_iter = max_iter
        self.encoder = encoder

    def _fit_features(self, Z: np.ndarray, Y: np.ndarray) -> None:
        coef, intercept = np.zeros((Y.shape[1], Z.shape[1])), np.zeros(Y.shape[1])
        self.n_iter_ = 0
        for j, labels in enumerate((Y >= 0.5).T):
            if labels.all() or not labels.any():
                intercept[j] = 40.0 if labels.all() else -40.0
                continue
            model = LogisticRegression(C=self.C, max_iter=self.max_iter).fit(Z, labels)
            coef[j], intercept[j] = model.coef_[0], model.intercept_[0]
            self.n_iter_ = max(self.n_iter_, int(model.n_iter_.max()))
        self.coef_, self.intercept_ = coef, intercept

    def _predict_features(self, Z: np.ndarray) -> np.ndarray:
        return _sigmoid(Z @ self.coef_.T + self.intercept_)

    def _fitted_arrays(self) -> dict[str, np.ndarray]:
        return {"coef": self.coef_, "intercept": self.intercept_}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.coef_, self.intercept_ = arrays["coef"], arrays["intercept"]


class MLPRouter(Router):
    """A small multi-output neural network (`sklearn.neural_network.MLPRegressor`) predicting every model's score.

    Args:
        hidden_layer_sizes, alpha, max_iter, random_state: as in `MLPRegressor` (ReLU, Adam).
        encoder: sentence-transformers model for text queries (default: the zoo's offline MiniLM).

    Attributes:
        coefs_, intercepts_: the layers' weights and biases (predictions are clipped to [0, 1]).
        n_iter_: Adam epochs run.
    """

    def __init__(self, hidden_layer_sizes=(64,), alpha: float = 1e-3, max_iter: int = 500, random_state: int = 0,
                 encoder: str = "all-MiniLM-L6-v2"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.alpha = alpha
        self.max_iter = max_iter
        self.random_state = random_state
        self.encoder = encoder

    def _fit_features(self, Z: np.ndarray, Y: np.ndarray) -> None:
        model = MLPRegressor(hidden_layer_sizes=tuple(self.hidden_layer_sizes), alpha=self.alpha,
                             max_iter=self.max_iter, random_state=self.random_state)
        with warnings.catch_warnings():  # a small router on few examples often stops at max_iter; that is fine
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(Z, Y.ravel() if Y.shape[1] == 1 else Y)
        self.coefs_, self.intercepts_ = list(model.coefs_), list(model.intercepts_)
        self.n_iter_ = model.n_iter_

    def _predict_features(self, Z: np.ndarray) -> np.ndarray:
        h = Z
        for i, (w, b) in enumerate(zip(self.coefs_, self.intercepts_)):
            h = h @ w + b
            if i < len(self.coefs_) - 1:
                h = np.maximum(h, 0.0)  # MLPRegressor's default ReLU; identity output
        return np.clip(h.reshape(len(Z), -1), 0.0, 1.0)

    def _fitted_arrays(self) -> dict[str, np.ndarray]:
        arrays = {f"coef_{i}": w for i, w in enumerate(self.coefs_)}
        arrays.update({f"intercept_{i}": b for i, b in enumerate(self.intercepts_)})
        return arrays

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        layers = len([k for k in arrays if k.startswith("coef_")])
        self.coefs_ = [arrays[f"coef_{i}"] for i in range(layers)]
        self.intercepts_ = [arrays[f"intercept_{i}"] for i in range(layers)]
