"""What the kernel holds, as one JSON-able dict: loaded models, engine statistics, jobs and device memory.

Reads only modules that are already imported (`sys.modules`): asking for a snapshot must never import torch or
load anything, since it runs every half second on a background thread of the user's kernel.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any


def model_snapshots() -> list[dict[str, Any]]:
    """`LoadedModel.snapshot()` of every model compound loaded in this process ([] before any), with its context size."""
    loading = _imported("compound.lm.loading")  # compound.lm itself loads lazily: ask its registry module
    loaded_models = getattr(loading, "loaded_models", None)
    if loaded_models is None:
        return []
    return [_jsonable({**m.snapshot(), "context_tokens": context_tokens(m)}) for m in loaded_models()]


def context_tokens(loaded: Any) -> int | None:
    """Prompt + output tokens one call may use: the engine's `max_seq_len` (the model's limit when no engine runs yet)."""
    engine = getattr(loaded, "_engine", None)
    config = getattr(engine, "config", None)
    if config is not None:
        return config.max_seq_len
    configured = getattr(getattr(loaded, "engine_config", None), "max_seq_len", None)
    limit = getattr(getattr(getattr(loaded, "model", None), "config", None), "max_position_embeddings", None)
    sizes = [size for size in (configured, limit) if size]
    return min(sizes) if sizes else None


def job_snapshots() -> list[dict[str, Any]]:
    """`Job.snapshot()` of running and recently finished background jobs ([] before compound.jobs is used)."""
    jobs = _imported("compound.jobs")
    if jobs is None:
        return []
    return [_jsonable(job.snapshot()) for job in jobs.list_jobs()]


def find_job(job_id: str) -> Any | None:
    jobs = sys.modules.get("compound.jobs")
    if jobs is None:
        return None
    return next((job for job in jobs.list_jobs() if str(job.id) == str(job_id)), None)


def device_memory() -> dict[str, Any]:
    """Free/total GPU memory when torch already uses CUDA, else this process's resident memory."""
    torch = _imported("torch")
    cuda = getattr(torch, "cuda", None)  # None while the main thread is still importing torch
    if cuda is not None and cuda.is_available() and cuda.is_initialized():
        free, total = torch.cuda.mem_get_info()
        return {
            "kind": "cuda",
            "name": torch.cuda.get_device_name(),
            "used_bytes": int(total - free),
            "total_bytes": int(total),
        }
    return {"kind": "cpu", "name": "process RSS", "used_bytes": _process_rss(), "total_bytes": _machine_memory()}


def _imported(name: str) -> Any | None:
    """An already imported module, or None while it is missing or still being imported (by another thread)."""
    module = sys.modules.get(name)
    if module is None or getattr(getattr(module, "__spec__", None), "_initializing", False):
        return None
    return module


def kernel_snapshot() -> dict[str, Any]:
    """The message the sidebar draws: {type: "snapshot", models, jobs, device, pid, time}.

    Example:
        >>> snap = kernel_snapshot()
        >>> snap["type"], sorted(snap["device"])[:2]
        ('snapshot', ['kind', 'name'])
    """
    return {
        "type": "snapshot",
        "models": model_snapshots(),
        "jobs": job_snapshots(),
        "device": device_memory(),
        "pid": os.getpid(),
        "time": time.time(),
    }


def _process_rss() -> int:
    try:
        import psutil  # a dependency of ipykernel, so present wherever a kernel runs

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _machine_memory() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except ImportError:
        return None


def _jsonable(value: Any) -> Any:
    """Plain JSON types only (numpy/torch scalars, tuples and dataclasses become ints, floats, lists, dicts)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "as_dict"):
        return _jsonable(value.as_dict())
    return str(value)
