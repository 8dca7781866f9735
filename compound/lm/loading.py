"""Loading HF models once per process: (model, revision, device) -> one `LoadedModel` holding weights and engine."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch

from compound.lm.engine import Engine, EngineConfig


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
        try:
            return getattr(torch, dtype)
        except AttributeError:
            raise ValueError(f"unknown `dtype` {dtype!r}; use 'auto', 'float32', 'bfloat16' or 'float16'") from None
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
    _engine: Engine | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def engine(self) -> Engine:
        """The engine, started on first use (and again after `close()` or a crash)."""
        with self._lock:
            if self._engine is None or not self._engine.alive:
                self._engine = Engine(self.model, self.tokenizer, self.engine_config, name=self.name)
            return self._engine

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def memory_bytes(self) -> int:
        weights = sum(p.numel() * p.element_size() for p in self.model.parameters())
        weights += sum(b.numel() * b.element_size() for b in self.model.buffers())
        return weights + (self._engine.stats().kv_cache_bytes if self._engine is not None else 0)

    def snapshot(self) -> dict:
        """Plain-JSON description for the sidebar and widgets."""
        stats = self._engine.stats().as_dict() if self._engine is not None else {}
        return {
            "name": self.name,
            "model_id": self.model_id,
            "params": self.params,
            "device": str(self.device),
            "dtype": str(self.model.dtype).removeprefix("torch."),
            "memory_bytes": self.memory_bytes,
            "adapters": list(self.adapters),
            "fingerprint": self.fingerprint,
            "stats": stats,
        }

    def __post_init__(self):
        self.fingerprint = self.fingerprint or weights_fingerprint(self.model)

    def __repr__(self) -> str:
        return f"LoadedModel({self.name!r}, {self.params / 1e6:.1f}M params, {self.device}, {self.model.dtype})"


def weights_fingerprint(model: torch.nn.Module, samples: int = 1024) -> str:
    """A short hash of the weights: config plus ~`samples` evenly spaced values of every tensor (cheap for any size).

    It goes into DSPy's cache key, so a rebuilt or retrained model under the same name never gets old answers.
    """
    import hashlib

    h = hashlib.sha256(model.config.to_json_string().encode() if hasattr(model, "config") else b"")
    with torch.no_grad():
        for name, t in model.state_dict().items():
            flat = t.detach().reshape(-1)
            h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
            h.update(flat[:: max(1, flat.numel() // samples)].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


_REGISTRY: dict[tuple, LoadedModel] = {}
_REGISTRY_LOCK = threading.Lock()


def loaded_models() -> list[LoadedModel]:
    """Every model loaded in this process, oldest first.

    Example:
        >>> import compound as cp
        >>> [m.snapshot()["name"] for m in cp.loaded_models()]   # doctest: +SKIP
        ['zoo-tiny']
    """
    with _REGISTRY_LOCK:
        return list(_REGISTRY.values())


def find_loaded(name: str) -> LoadedModel | None:
    with _REGISTRY_LOCK:
        return next((m for m in _REGISTRY.values() if m.name == name), None)


def default_name(model_id: str) -> str:
    return Path(model_id.rstrip("/")).name if os.path.isdir(model_id) else model_id.replace("/", "--")


def load(
    model,
    *,
    tokenizer=None,
    name: str | None = None,
    revision: str | None = None,
    device: str = "auto",
    dtype: str | torch.dtype = "auto",
    engine_config: EngineConfig | None = None,
) -> LoadedModel:
    """Return the process-wide `LoadedModel` for (model, revision, device), loading the weights only the first time."""
    dev = pick_device(device)
    if isinstance(model, torch.nn.Module):
        if tokenizer is None or name is None:
            raise ValueError("a model object needs `tokenizer=` and `name=` too, e.g. cp.LM(model, tokenizer=tok, name='mine')")
        key = ("memory", name, None, str(dev))
    else:
        model_id = os.fspath(model)
        key = (os.path.abspath(model_id) if os.path.isdir(model_id) else model_id, revision, str(dev))
    with _REGISTRY_LOCK:
        if key in _REGISTRY:
            return _REGISTRY[key]
        if isinstance(model, torch.nn.Module):
            loaded = LoadedModel(name, f"memory:{name}", None, model.to(dev).eval(), tokenizer, engine_config)
        else:
            loaded = _load_from_hub_or_folder(key[0], revision, dev, pick_dtype(dtype, dev), name, engine_config)
        _REGISTRY[key] = loaded
        return loaded


def _load_from_hub_or_folder(model_id, revision, device, dtype, name, engine_config) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from compound.quiet import quiet_transformers

    is_dir = os.path.isdir(model_id)
    if not is_dir and (model_id.startswith((".", "/", "~")) or model_id.count("/") > 1):  # a path, not "org/name"
        raise FileNotFoundError(f"no model folder at {model_id!r}; give an existing folder or a hub id like 'org/name'")
    try:
        with quiet_transformers():  # no "Loading weights" bar: loading from disk is quick, and a saved notebook keeps it
            tokenizer = AutoTokenizer.from_pretrained(model_id, revision=revision)
            model = AutoModelForCausalLM.from_pretrained(model_id, revision=revision, dtype=dtype, use_safetensors=True)
    except OSError as exc:
        hint = "" if is_dir else (
            f" If there is no network: download it on a connected machine (`hf download {model_id}`) and copy the"
            " Hugging Face cache, or pass a local folder."
        )
        raise FileNotFoundError(
            f"could not load model {model_id!r} (revision={revision!r}): {str(exc).rstrip('.')}.{hint}"
        ) from exc
    model = model.to(device).eval()
    return LoadedModel(name or default_name(model_id), model_id, revision, model, tokenizer, engine_config)
