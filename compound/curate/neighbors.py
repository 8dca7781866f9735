"""Checks on the k-nearest-neighbour graph: outliers (cleanlab's OutOfDistribution) and a value per example
(cleanlab's kNN Data Shapley). One scikit-learn neighbour search serves both.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> points = np.vstack([rng.normal(0, 0.1, (40, 3)) + [1, 0, 0], [[0, 0, 1]]])   # the last point is far away
    >>> graph = NeighborGraph(points, k=5)
    >>> scores = graph.outlier_scores()
    >>> int(scores.argmin()), bool(scores[-1] < outlier_threshold(scores))
    (40, True)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

K_NEIGHBORS = 10
# Outlier default: cleanlab Datalab's rule, average neighbour distance above Q3 + (1/0.37 - 1) * IQR.
IQR_SCALE = 1 / 0.37 - 1
# kNN data value below 0.5 means the example likely hurts a model trained on the set (cleanlab's reading).
VALUE_THRESHOLD = 0.5


def dense_features(features, dims: int = 128, seed: int = 0) -> np.ndarray:
    """Dense rows for neighbour search: sparse TF-IDF is reduced with TruncatedSVD (LSA); dense input is kept."""
    if not hasattr(features, "toarray"):
        return np.asarray(features, dtype=np.float32)
    from sklearn.decomposition import TruncatedSVD

    dims = max(1, min(dims, features.shape[1] - 1, features.shape[0] - 1))
    reduced = TruncatedSVD(n_components=dims, n_iter=2, random_state=seed).fit_transform(features)
    norms = np.linalg.norm(reduced, axis=1, keepdims=True)
    return (reduced / np.where(norms == 0, 1.0, norms)).astype(np.float32)


class NeighborGraph:
    """cleanlab's OutOfDistribution fitted on dense features; its neighbour index then serves the value check."""

    def __init__(self, features: np.ndarray, k: int = K_NEIGHBORS):
        from cleanlab.outlier import OutOfDistribution

        self.k = max(1, min(k, len(features) - 1))
        ood = OutOfDistribution(params={"k": self.k})
        self._outlier_scores = ood.fit_score(features=features, verbose=False)
        self.knn = ood.params["knn"]  # a fitted sklearn NearestNeighbors over `features`

    def outlier_scores(self) -> np.ndarray:
        """Scores in [0, 1]: low = far from its neighbours."""
        return self._outlier_scores

    def values(self, labels: Sequence[str]) -> np.ndarray:
        """cleanlab's kNN Data Shapley value per example in [0, 1] (0.5 = neutral) for one label column."""
        from cleanlab.data_valuation import data_shapley_knn

        classes = sorted(set(labels))
        y = np.array([classes.index(label) for label in labels])
        graph = self.knn.kneighbors_graph(mode="distance")  # each row's k neighbours, nearest first, itself excluded
        return data_shapley_knn(y, knn_graph=graph, k=self.k)


def outlier_threshold(scores: np.ndarray) -> float:
    """The score matching cleanlab Datalab's default rule on neighbour distance (scores are exp(-distance / scale))."""
    distance = -np.log(np.clip(scores, 1e-12, None))
    q1, q3 = np.quantile(distance, [0.25, 0.75])
    return float(np.exp(-(q3 + IQR_SCALE * (q3 - q1))))
