"""`MFRouter`: RouteLLM's matrix-factorization router, for any number of models.

RouteLLM scores a (model, query) pair as `w . (normalize(v_model) * (W q))`: a learned embedding per model, the
query embedding projected to the same size, and a linear head over their elementwise product. RouteLLM fits it on
pairwise wins between two models; here each model's own score is the target (binary cross-entropy against the
metric score, plus a bias per model), which needs no pairs and works for N models. The model is small enough that
its gradients are written out below and trained with full-batch Adam in numpy: deterministic for a `random_state`,
and a second or two on a CPU where torch's per-op overhead made the same loop ten times slower.

Example:
    >>> import numpy as np
    >>> X = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> Y = np.array([[1, 1], [1, 1], [0, 1], [0, 1]])
    >>> MFRouter(dim=8, epochs=300).fit(X, Y).route([[0.0, 1.0], [1.0, 0.0]], threshold=0.5).tolist()
    [1, 0]
"""

from __future__ import annotations

import numpy as np

from compound.route.base import Router


class MFRouter(Router):
    """Matrix factorization over (model, query) pairs.

    Args:
        dim: size of the model embeddings and of the query projection.
        epochs: full-batch Adam steps; lr: their learning rate; weight_decay: L2 on all weights.
        random_state: seed of the initialization.
        encoder: sentence-transformers model for text queries (default: the zoo's offline MiniLM).

    Attributes:
        model_embeddings_: (k, dim), unit rows; projection_: (d, dim); head_: (dim,); bias_: (k,).
    """

    def __init__(self, dim: int = 32, epochs: int = 400, lr: float = 0.01, weight_decay: float = 1e-4,
                 random_state: int = 0, encoder: str = "all-MiniLM-L6-v2"):
        self.dim = dim
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.random_state = random_state
        self.encoder = encoder

    def _fit_features(self, Z: np.ndarray, Y: np.ndarray) -> None:
        if not (isinstance(self.dim, (int, np.integer)) and self.dim >= 1):
            raise ValueError(f"`dim` must be a positive integer, got {self.dim!r}")
        rng = np.random.default_rng(self.random_state)
        d, k = Z.shape[1], Y.shape[1]
        weights = {"models": rng.normal(size=(k, self.dim)),                      # v_j, normalized in use
                   "projection": rng.normal(size=(d, self.dim)) / np.sqrt(d),     # W
                   "head": rng.normal(size=self.dim) / np.sqrt(self.dim),         # w
                   "bias": np.zeros(k)}                                           # b_j
        moments = {name: (np.zeros_like(w), np.zeros_like(w)) for name, w in weights.items()}
        targets = np.clip(Y, 0.0, 1.0)
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        for step in range(1, int(self.epochs) + 1):
            grads = self._gradients(Z, targets, **weights)
            for name, grad in grads.items():  # Adam; weight_decay adds L2 to the gradient, as torch.optim.Adam does
                grad = grad + self.weight_decay * weights[name]
                m, v = moments[name]
                m[...] = beta1 * m + (1 - beta1) * grad
                v[...] = beta2 * v + (1 - beta2) * grad ** 2
                m_hat, v_hat = m / (1 - beta1 ** step), v / (1 - beta2 ** step)
                weights[name] -= self.lr * m_hat / (np.sqrt(v_hat) + eps)
        norms = np.linalg.norm(weights["models"], axis=1, keepdims=True)
        self.model_embeddings_ = weights["models"] / np.maximum(norms, 1e-12)
        self.projection_, self.head_, self.bias_ = weights["projection"], weights["head"], weights["bias"]

    @staticmethod
    def _gradients(Z, targets, models, projection, head, bias) -> dict[str, np.ndarray]:
        """Gradients of the mean binary cross-entropy of sigmoid(logits) against the targets."""
        norms = np.maximum(np.linalg.norm(models, axis=1, keepdims=True), 1e-12)
        unit = models / norms                                          # (k, dim)
        projected = Z @ projection                                     # (n, dim)
        logits = (projected * head) @ unit.T + bias                    # (n, k): sum_d P_id w_d u_jd + b_j
        dlogits = (1.0 / (1.0 + np.exp(-np.clip(logits, -40, 40))) - targets) / targets.size
        per_model = dlogits.T @ projected                              # (k, dim): sum_i dL_ij P_id
        dunit = per_model * head
        dmodels = (dunit - unit * (unit * dunit).sum(axis=1, keepdims=True)) / norms  # through the normalization
        dprojected = (dlogits @ unit) * head                           # (n, dim)
        return {"models": dmodels, "projection": Z.T @ dprojected, "head": (per_model * unit).sum(axis=0),
                "bias": dlogits.sum(axis=0)}

    def _predict_features(self, Z: np.ndarray) -> np.ndarray:
        logits = ((Z @ self.projection_) * self.head_) @ self.model_embeddings_.T + self.bias_
        return 1.0 / (1.0 + np.exp(-np.clip(logits, -40, 40)))

    def _fitted_arrays(self) -> dict[str, np.ndarray]:
        return {"model_embeddings": self.model_embeddings_, "projection": self.projection_, "head": self.head_,
                "bias": self.bias_}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.model_embeddings_, self.projection_ = arrays["model_embeddings"], arrays["projection"]
        self.head_, self.bias_ = arrays["head"], arrays["bias"]
