"""Label checks: which given labels look wrong, and how the classes are balanced.

Small label sets: cleanlab's confident learning on out-of-fold probabilities from a scikit-learn logistic-loss classifier
on the input features, averaged with the program's own model's probabilities over the label set when `program=` is
given. Free-text labels: the program's model scores the given label against its own answer,
`p(given) / p(own answer)` (1.0 when they agree); a low ratio means the model is confident in something else.
Nothing here re-implements confident learning: cleanlab flags and ranks.

Example:
    >>> import numpy as np
    >>> labels = ["a"] * 20 + ["b"] * 20
    >>> features = np.array([[0.0]] * 20 + [[1.0]] * 20); features[3] = [1.0]   # example 3 looks like a "b"
    >>> result = categorical_issues(labels, features)
    >>> np.flatnonzero(result.flag).tolist(), result.predicted[3]
    ([3], 'b')
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Free-text labels: flag when p(given label) is below this fraction of p(the model's own answer). Chosen on 10%
# injected wrong labels of the zoo's extraction and conversion tasks scored by `small` (two seeds): precision and
# recall >= 0.95 at 1e-4, while 0.01 already halves precision. Where the model cannot do the task at all (the zoo's
# addition) recall drops; bench/curate.py prints the table.
FREE_TEXT_THRESHOLD = 1e-4
# A class is under-represented below this fraction of an even share (cleanlab Datalab's class-imbalance default).
IMBALANCE_THRESHOLD = 0.1


@dataclass
class LabelResult:
    """Per example: label quality in [0, 1] (low = suspicious), cleanlab's flag, and the most likely label."""

    quality: np.ndarray
    flag: np.ndarray
    predicted: list[str | None]
    confidence: np.ndarray  # probability of `predicted` (categorical) or of the model's own answer (free text)
    source: str


def out_of_fold_probs(features, y: np.ndarray, n_classes: int, seed: int = 0) -> np.ndarray:
    """(N, K) out-of-fold class probabilities of a logistic-loss linear model (5-fold, stratified when classes allow).

    SGD rather than lbfgs: on 2,000 sparse TF-IDF rows it gave the same label-issue precision/recall in a tenth of
    the time (bench/curate.py)."""
    from sklearn.linear_model import SGDClassifier
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict

    smallest = np.bincount(y, minlength=n_classes).min()
    folds = (StratifiedKFold(n_splits=min(5, smallest), shuffle=True, random_state=seed) if smallest >= 2
             else KFold(n_splits=min(5, len(y)), shuffle=True, random_state=seed))
    classifier = SGDClassifier(loss="log_loss", alpha=1e-4, random_state=seed)
    return cross_val_predict(classifier, features, y, cv=folds, method="predict_proba")


def categorical_issues(labels: Sequence[str], features, model_probs: np.ndarray | None = None) -> LabelResult:
    """cleanlab's label issues for one categorical field; `model_probs` (N, K over sorted classes) is averaged in."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    classes = sorted(set(labels))
    y = np.array([classes.index(label) for label in labels])
    probs = out_of_fold_probs(features, y, len(classes))
    source = "classifier"
    if model_probs is not None:
        probs = (probs + model_probs) / 2
        source = "classifier + program model"
    flag = find_label_issues(labels=y, pred_probs=probs)
    quality = get_label_quality_scores(labels=y, pred_probs=probs)
    best = probs.argmax(axis=1)
    return LabelResult(quality, flag, [classes[k] for k in best], probs[np.arange(len(y)), best], source)


def free_text_issues(given_logp: np.ndarray, own_logp: np.ndarray, own: Sequence[str | None],
                     labels: Sequence[str], threshold: float = FREE_TEXT_THRESHOLD) -> LabelResult:
    """Quality = p(given) / p(own answer), capped at 1; unscored (NaN) where the model gave no parsable answer."""
    agrees = np.array([o is not None and o.strip() == g.strip() for o, g in zip(own, labels)])
    quality = np.minimum(1.0, np.exp(given_logp - own_logp))
    quality[agrees] = 1.0
    quality[np.array([o is None for o in own])] = np.nan
    flag = np.nan_to_num(quality, nan=1.0) < threshold
    return LabelResult(quality, flag, list(own), np.exp(own_logp), "program model likelihood")


def imbalance(labels: Sequence[str], threshold: float = IMBALANCE_THRESHOLD) -> dict[str, float]:
    """{class: share / even share} for the classes below `threshold` of an even share."""
    counts = Counter(labels)
    even = len(labels) / len(counts)
    return {label: count / even for label, count in counts.items() if count / even < threshold}
