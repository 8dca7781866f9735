"""Text -> vectors for curation: a fast character n-gram encoder by default, or any sentence encoder.

Why character n-grams by default: a near duplicate is usually a copy with light edits (case, punctuation, a
greeting added), and templated training data is full of *different* examples that say almost the same thing
("refund for order 12345" vs "... 67890"). Measured on the zoo's triage tickets, MiniLM put injected near copies
(cosine >= 0.89) and distinct template siblings (up to 0.98) in overlapping ranges, while TF-IDF over character
2-4-grams hashed into 512 dimensions separated them cleanly (copies >= 0.91, siblings <= 0.87), at ~100x the speed
on a CPU. 512 dimensions rather than more: SemHash's index costs grow with the width, and separation held.
Pass `encoder=cp.zoo.encoder()` (or any object with `encode(list[str]) -> array`) to treat paraphrases as duplicates
and give the label classifier semantic features.

Example:
    >>> enc = CharNgramEncoder().fit(["refund for order 12345", "the app crashes"])
    >>> vectors = enc.encode(["refund for order 12345", "Refund for order 12345!"])
    >>> round(float(vectors[0] @ vectors[1]), 2) > 0.9
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# Defaults for "same example": char n-gram TF-IDF cosines of near copies vs. distinct examples (see above);
# sentence encoders put paraphrases near 0.95.
CHAR_NGRAM_THRESHOLD = 0.9
SENTENCE_ENCODER_THRESHOLD = 0.95


class CharNgramEncoder:
    """TF-IDF over hashed character 2-4-grams (scikit-learn), L2-normalised; fit the IDF on the texts you compare.

    `encode` returns dense float32 rows (what SemHash's index takes); `transform` the sparse matrix (what the label
    classifier trains on, much faster than dense).
    """

    duplicate_threshold = CHAR_NGRAM_THRESHOLD

    def __init__(self, n_features: int = 512, ngram_range: tuple[int, int] = (2, 4)):
        self.n_features = n_features
        self.ngram_range = ngram_range

    def fit(self, texts: Sequence[str]) -> CharNgramEncoder:
        from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer

        self.hasher_ = HashingVectorizer(
            analyzer="char_wb", ngram_range=self.ngram_range, n_features=self.n_features,
            alternate_sign=False, norm=None, lowercase=True,
        )
        self.idf_ = TfidfTransformer(sublinear_tf=True).fit(self.hasher_.transform(list(texts)))
        return self

    def transform(self, texts: Sequence[str]):
        if not hasattr(self, "idf_"):
            raise RuntimeError("CharNgramEncoder is not fitted: call .fit(texts) first")
        return self.idf_.transform(self.hasher_.transform(list(texts)))

    def encode(self, texts: Sequence[str], **_: Any) -> np.ndarray:
        return self.transform(texts).toarray().astype(np.float32)


class SentenceEncoder:
    """Wraps an encoder with `encode(list[str])` (sentence-transformers, model2vec): unit-length float32 rows."""

    duplicate_threshold = SENTENCE_ENCODER_THRESHOLD

    def __init__(self, model: Any):
        if not callable(getattr(model, "encode", None)):
            raise TypeError(
                f"encoder must have an encode(list_of_texts) method (e.g. cp.zoo.encoder()), got {type(model).__name__}"
            )
        self.model = model

    def fit(self, texts: Sequence[str]) -> SentenceEncoder:
        return self

    def encode(self, texts: Sequence[str], **_: Any) -> np.ndarray:
        vectors = np.asarray(self.model.encode(list(texts)), dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms == 0, 1.0, norms)

    transform = encode


def make_encoder(encoder: Any) -> CharNgramEncoder | SentenceEncoder:
    """None -> a new `CharNgramEncoder`; "minilm" -> `cp.zoo.encoder()`; an encoder object -> wrapped."""
    if encoder is None:
        return CharNgramEncoder()
    if isinstance(encoder, (CharNgramEncoder, SentenceEncoder)):
        return encoder
    if encoder == "minilm":
        from compound.zoo import encoder as zoo_encoder
        from compound.zoo.cache import quiet_transformers

        with quiet_transformers():
            return SentenceEncoder(zoo_encoder())
    return SentenceEncoder(encoder)
