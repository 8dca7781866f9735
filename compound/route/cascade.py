"""`CascadeRouter`: try the cheapest model first and defer to the next one while its confidence is below the threshold.

The confidence of an answer is one of (FrugalGPT's scorer; Gupta et al. 2024's token-level uncertainty):

    "logprob"    exp(mean token log-probability of the answer): needs an LM that reports log-probabilities
    "agreement"  the share of extra samples (at temperature > 0) that give the same answer
    "verifier"   the score a verifier (a DSPy module or any callable) gives the answer

Unlike the other routers it reads no query embedding: `X` is the (n, k) matrix of each model's confidence on each
query (`RoutingData.confidence(kind)`; at run time `cp.Routed` measures it call by call). A cascade pays for every
model it tried, so its cost is the sum over the tried models.

Example:
    >>> import numpy as np
    >>> confidence = np.array([[0.9, 1.0], [0.2, 1.0]])     # the cheap model is unsure about the second query
    >>> CascadeRouter().fit(confidence, [[1, 1], [0, 1]]).route(confidence, threshold=0.5).tolist()
    [0, 1]
"""

from __future__ import annotations

import numpy as np

from compound.route.base import Router

KINDS = ("logprob", "agreement", "verifier")


def cascade(confidence, costs, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Run the cascade on a confidence matrix: (model that answers (n,), models tried (n, k) booleans)."""
    confidence = np.asarray(confidence, float)
    order = np.argsort(np.asarray(costs, float), kind="stable")
    n = len(confidence)
    answered = np.full(n, order[-1])
    tried = np.zeros(confidence.shape, bool)
    open_rows = np.ones(n, bool)
    for j in order:
        tried[open_rows, j] = True
        stop = open_rows & (confidence[:, j] >= threshold) if j != order[-1] else open_rows
        answered[stop] = j
        open_rows &= ~stop
    return answered, tried


class CascadeRouter(Router):
    """Cheapest model first; defer while confidence < threshold; the most expensive model always answers.

    Args:
        confidence: which confidence to defer on: "logprob", "agreement" or "verifier".
        samples, temperature: for "agreement", how many extra answers `cp.Routed` draws per call, and how hot
            (collect the training data with the same `samples=` and `temperature=`).

    Attributes:
        models_, costs_: the candidates and their costs (the cascade tries them cheapest first).
    """

    takes_text = False

    def __init__(self, confidence: str = "agreement", samples: int = 5, temperature: float = 0.7):
        self.confidence = confidence
        self.samples = samples
        self.temperature = temperature

    def _data_features(self, data):
        return data.confidence(self.confidence)

    def _fit_features(self, Z: np.ndarray, Y: np.ndarray) -> None:
        if self.confidence not in KINDS:
            raise ValueError(f"`confidence` must be one of {KINDS}, got {self.confidence!r}")
        if Z.shape[1] != Y.shape[1]:
            raise ValueError(f"a cascade's X is the (n, k) confidence of each model: got {Z.shape[1]} columns for "
                             f"{Y.shape[1]} models")

    def _predict_features(self, Z: np.ndarray) -> np.ndarray:
        return Z

    def route(self, X, threshold: float = 0.5) -> np.ndarray:
        """(n,) index of the model whose answer the cascade keeps under `threshold`."""
        return cascade(self.predict_scores(X), self.costs_, threshold)[0]

    def tried(self, X, threshold: float = 0.5) -> np.ndarray:
        """(n, k) which models the cascade called (and paid for) on each query."""
        return cascade(self.predict_scores(X), self.costs_, threshold)[1]
