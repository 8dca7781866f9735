"""`KNNRouter`: predict each model's score on a query as its mean score on the k most similar training queries.

RouterBench's and RouterArena's strongest simple baseline; scikit-learn's `NearestNeighbors` finds the neighbours
(cosine distance on the embeddings).

Example:
    >>> import numpy as np
    >>> X = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> Y = np.array([[1, 1], [1, 1], [0, 1], [0, 1]])            # the cheap model fails on the second kind
    >>> KNNRouter(k=2).fit(X, Y).route([[0.0, 1.0], [1.0, 0.0]], threshold=0.5).tolist()
    [1, 0]
"""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors

from compound.route.base import Router


class KNNRouter(Router):
    """k-nearest-neighbour router over query embeddings.

    Args:
        k: neighbours averaged per query (fewer when the training set is smaller).
        weights: "uniform", or "distance" to weight neighbours by 1 / cosine distance.
        encoder: sentence-transformers model that embeds text queries (default: the zoo's offline MiniLM).

    Attributes:
        neighbors_: the fitted `sklearn.neighbors.NearestNeighbors`.
        train_features_, train_scores_: the training queries' embeddings and (n, k) scores.
    """

    def __init__(self, k: int = 16, weights: str = "uniform", encoder: str = "all-MiniLM-L6-v2"):
        self.k = k
        self.weights = weights
        self.encoder = encoder

    def _fit_features(self, Z: np.ndarray, Y: np.ndarray) -> None:
        if not (isinstance(self.k, (int, np.integer)) and self.k >= 1):
            raise ValueError(f"`k` must be a positive integer, got {self.k!r}")
        if self.weights not in ("uniform", "distance"):
            raise ValueError(f"`weights` must be 'uniform' or 'distance', got {self.weights!r}")
        self._restore({"train_features": Z, "train_scores": Y})

    def _predict_features(self, Z: np.ndarray) -> np.ndarray:
        distances, index = self.neighbors_.kneighbors(Z, n_neighbors=min(self.k, len(self.train_scores_)))
        neighbours = self.train_scores_[index]  # (n, k_neighbours, n_models)
        if self.weights == "uniform":
            return neighbours.mean(axis=1)
        w = 1.0 / np.maximum(distances, 1e-9)
        return (neighbours * w[..., None]).sum(axis=1) / w.sum(axis=1, keepdims=True)

    def _fitted_arrays(self) -> dict[str, np.ndarray]:
        return {"train_features": self.train_features_, "train_scores": self.train_scores_}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.train_features_ = np.asarray(arrays["train_features"], float)
        self.train_scores_ = np.asarray(arrays["train_scores"], float)
        self.neighbors_ = NearestNeighbors(metric="cosine", algorithm="brute").fit(self.train_features_)
