"""Loading HF models once per process, and the registry of what is loaded.

An entry is keyed by everything that changes the output: where the weights come from (and, for a folder, the files'
size and modification time; for a model object, its weights' fingerprint), revision, device, dtype and engine config.
Entries that differ only in engine config share one copy of the weights. A changed model under a name already in use
is a new entry (with a warning), never stale output.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from compound.lm.config import EngineConfig
from compound.lm.engine import Engine

log = logging.getLogger("compound.lm")


def pick_device(device: str = "auto") -> torch.device:
    """`auto`: cuda > mps > cpu."""
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """`auto`: bf16 on CUDA (fp16 where bf16 is unsupported), fp16 on MPS, fp32 on CPU."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype != "auto":
        found = getattr(torch, str(dtype), None)
        if not isinstance(found, torch.dtype):
            raise ValueError(f"unknown `dtype` {dtype!r}; use 'auto', 'float32', 'bfloat16' or 'float16'")
        return found
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float16 if device.type == "mps" else torch.float32


@dataclass(eq=False)
class LoadedModel:
    """Weights, tokenizer and the one engine serving them in this process."""

    name: str
    model_id: str  # hub id, local folder, or "memory:<name>" for a model object handed in
    revision: str | None
    model: torch.nn.Module
    tokenizer: object
    engine_config: EngineConfig | None = None
    adapters: list[str] = field(default_factory=list)
    fingerprint: str = ""
    source: str = ""  # portable reference (compound.lm.refs): "zoo:small", a hub id, "./folder", "memory:<name>"
    dspy_adapter: str | None = None  # "module:Class" of the DSPy adapter its prompts need, when not DSPy's default
    lm_defaults: dict = field(default_factory=dict)  # `dspy.LM` keywords every compound LM of this model starts from
    _engine: Engine | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def engine(self) -> Engine:
        """The engine, started on first use, and again after `close()` or a fault of the whole model. A dead engine's
        K/V memory is freed before the new one is sized, so a restart never needs room for both."""
        with self._lock:
            if self._engine is None or not self._engine.alive:
                if self._engine is not None:
                    self._engine.close()  # joins the old thread, which frees its memory on the way out
                    self._engine = None
                self._engine = Engine(self.model, self.tokenizer, self.engine_config, name=self.name)
            return self._engine

    def close(self) -> None:
        """Stop the engine and free its K/V memory; the weights stay loaded and the next call starts a new engine."""
        with self._lock:
            if self._engine is not None:
                self._engine.close()
                self._engine = None

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def memory_bytes(self) -> int:
        weights = sum(p.numel() * p.element_size() for p in self.model.parameters())
        weights += sum(b.numel() * b.element_size() for b in self.model.buffers())
        engine = self._engine
        return weights + (engine.stats().kv_cache_bytes if engine is not None and engine.alive else 0)

    def snapshot(self) -> dict:
        """Plain-JSON description for the sidebar and widgets."""
        engine = self._engine
        return {
            "name": self.name,
            "model_id": self.model_id,
            "source": self.source,
            "params": self.params,
            "device": str(self.device),
            "dtype": str(self.model.dtype).removeprefix("torch."),
            "memory_bytes": self.memory_bytes,
            "adapters": list(self.adapters),
            "fingerprint": self.fingerprint,
            "stats": engine.stats().as_dict() if engine is not None else {},
        }

    def __post_init__(self):
        self.fingerprint = self.fingerprint or weights_fingerprint(self.model)
        self.source = self.source or self.model_id

    def __repr__(self) -> str:
        return f"LoadedModel({self.name!r}, {self.params / 1e6:.1f}M params, {self.device}, {self.model.dtype})"


def weights_fingerprint(model: torch.nn.Module, samples: int = 1024) -> str:
    """A short hash of the weights: config plus ~`samples` evenly spaced values of every tensor (cheap for any size).

    Values are hashed at bfloat16 precision, so the same weights served in float32 or bfloat16 share a fingerprint.
    It goes into DSPy's cache key and into saved programs, so other weights under the same name are never mistaken
    for these.
    """
    h = hashlib.sha256(model.config.to_json_string().encode() if hasattr(model, "config") else b"")
    with torch.no_grad():
        for name, t in model.state_dict().items():
            flat = t.detach().reshape(-1)
            h.update(f"{name}{tuple(t.shape)}".encode())
            h.update(flat[:: max(1, flat.numel() // samples)].to(torch.bfloat16).float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


_REGISTRY: dict[tuple, LoadedModel] = {}
_WEIGHTS: dict[tuple, tuple] = {}  # weights key -> (model, tokenizer, fingerprint), shared across engine configs
_REGISTRY_LOCK = threading.RLock()


def loaded_models() -> list[LoadedModel]:
    """Every model loaded in this process, oldest first.

    Example:
        >>> import compound as cp
        >>> tiny = cp.zoo.lm("tiny")
        >>> "zoo-tiny" in [m.snapshot()["name"] for m in cp.loaded_models()]
        True
    """
    with _REGISTRY_LOCK:
        return list(_REGISTRY.values())


def find_loaded(name: str, fingerprint: str | None = None) -> LoadedModel | None:
    """The most recently loaded model called `name` (with these weights, when `fingerprint` is given)."""
    with _REGISTRY_LOCK:
        found = [m for m in _REGISTRY.values() if m.name == name and fingerprint in (None, m.fingerprint)]
    return found[-1] if found else None


def close(model) -> None:
    """Stop the engine serving `model` (a compound LM, a `LoadedModel` or its name) and free its K/V memory.

    Pending calls fail with `EngineClosedError`; the weights stay loaded and the next call starts a new engine.
    Closing one copy of an LM through DSPy (`lm.close()`) never stops an engine other copies share: this does.

    Example:
        >>> import compound as cp
        >>> from compound.testing import tiny_llama
        >>> model, tok = tiny_llama(0)
        >>> lm = cp.LM(model, tokenizer=tok, name="doc-tiny")
        >>> cp.lm.close(lm)
        >>> cp.lm.engine_of(lm).alive     # the next use starts a fresh engine on the same weights
        True
    """
    if isinstance(model, LoadedModel):
        loaded = model
    elif isinstance(model, str):
        loaded = find_loaded(model)
    else:
        loaded = getattr(getattr(model, "_engine_spec", None), "loaded", None)
    if loaded is None:
        raise ValueError(f"{model!r} is not a model compound has loaded; loaded: {[m.name for m in loaded_models()]}")
    loaded.close()


def default_name(model_id: str) -> str:
    return Path(model_id.rstrip("/")).name if os.path.isdir(model_id) else model_id.replace("/", "--")


def _files_signature(folder: str) -> tuple:
    """Size and modification time of a folder's weight files: rebuilt weights make a new registry entry."""
    files = sorted(p for p in Path(folder).iterdir() if p.suffix in {".safetensors", ".json"})
    return tuple((p.name, (st := p.stat()).st_size, st.st_mtime_ns) for p in files)


def load(
    model,
    *,
    tokenizer=None,
    name: str | None = None,
    revision: str | None = None,
    device: str = "auto",
    dtype: str | torch.dtype = "auto",
    engine_config: EngineConfig | None = None,
    source: str | None = None,
    dspy_adapter: str | None = None,
    lm_defaults: dict | None = None,
) -> LoadedModel:
    """Return the process-wide `LoadedModel` for this model, loading the weights only the first time."""
    dev = pick_device(device)
    config_key = repr(engine_config) if engine_config is not None else None
    with _REGISTRY_LOCK:
        if isinstance(model, torch.nn.Module):
            if tokenizer is None or name is None:
                raise ValueError(
                    "a model object needs `tokenizer=` and `name=` too, e.g. cp.LM(model, tokenizer=tok, name='mine')"
                )
            model = model.to(dev).eval()
            fingerprint = weights_fingerprint(model)
            weights_key = ("memory", name, fingerprint, str(dev))
            _WEIGHTS.setdefault(weights_key, (model, tokenizer, fingerprint))
            model_id, source = f"memory:{name}", f"memory:{name}"
        else:
            model_id = os.fspath(model)
            is_dir = os.path.isdir(model_id)
            ident = os.path.abspath(model_id) if is_dir else model_id
            weights_key = (ident, revision, str(dev), str(pick_dtype(dtype, dev)),
                           _files_signature(ident) if is_dir else None)
            if weights_key not in _WEIGHTS:
                _WEIGHTS[weights_key] = _load_weights(ident, revision, dev, pick_dtype(dtype, dev))
            model_id = ident
        key = (weights_key, config_key)
        if key in _REGISTRY:
            return _REGISTRY[key]
        weights, tok, fingerprint = _WEIGHTS[weights_key]
        loaded = LoadedModel(
            name or default_name(model_id), model_id, revision, weights, tok, engine_config,
            fingerprint=fingerprint, source=source or "", dspy_adapter=dspy_adapter, lm_defaults=dict(lm_defaults or {}),
        )
        if not source and os.path.isdir(model_id):
            from compound.lm.refs import portable_folder

            loaded.source = portable_folder(model_id)
        same_name = [m for m in _REGISTRY.values() if m.name == loaded.name and m.fingerprint != fingerprint]
        if same_name:
            warnings.warn(
                f"model name {loaded.name!r} now serves other weights (fingerprint {same_name[-1].fingerprint} -> "
                f"{fingerprint}); LMs made before keep the old weights, and DSPy's cache keeps their answers apart",
                stacklevel=3,
            )
        _REGISTRY[key] = loaded
        return loaded


# ---- hub and folders -------------------------------------------------------------------------------------------------
_HUB_REACHABLE: bool | None = None


def hub_reachable() -> bool:
    """Whether the Hugging Face hub can be reached; checked once per process (a DNS lookup and a TCP connect)."""
    global _HUB_REACHABLE
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}:
        return False
    if _HUB_REACHABLE is None:
        host = os.environ.get("HF_ENDPOINT", "https://huggingface.co").split("://")[-1].split("/")[0]
        try:
            socket.create_connection((host.split(":")[0], 443), timeout=3).close()
            _HUB_REACHABLE = True
        except OSError:
            _HUB_REACHABLE = False
    return _HUB_REACHABLE


def _load_weights(model_id, revision, device, dtype) -> tuple:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from compound.quiet import quiet_transformers

    is_dir = os.path.isdir(model_id)
    if not is_dir and (model_id.startswith((".", "/", "~")) or model_id.count("/") > 1):  # a path, not "org/name"
        raise FileNotFoundError(f"no model folder at {model_id!r}; give an existing folder or a hub id like 'org/name'")
    offline = not is_dir and not hub_reachable()
    try:
        with quiet_transformers():  # no "Loading weights" bar: loading from disk is quick, and a saved notebook keeps it
            tokenizer = AutoTokenizer.from_pretrained(model_id, revision=revision, local_files_only=offline)
            model = AutoModelForCausalLM.from_pretrained(
                model_id, revision=revision, dtype=dtype, use_safetensors=True, local_files_only=offline
            )
    except OSError as exc:
        if offline:
            raise FileNotFoundError(
                f"model {model_id!r} (revision={revision!r}) is not in the local cache; check the name, or connect "
                "to download it. There is no network now (or HF_HUB_OFFLINE is set): download it on a connected "
                f"machine (`hf download {model_id}`) and copy the Hugging Face cache, or pass a local folder."
            ) from None
        raise FileNotFoundError(
            f"could not load model {model_id!r} (revision={revision!r}): {str(exc).rstrip('.')}. Check the name "
            "(hub ids look like 'org/name') or pass a local folder."
        ) from exc
    model = model.to(device).eval()
    return model, tokenizer, weights_fingerprint(model)
