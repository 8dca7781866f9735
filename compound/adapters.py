"""`cp.adapters`: fine-tuned adapters on disk, one folder each, in PEFT's own format plus compound's manifest.

    <cache>/adapters/<name>/adapter_config.json        PEFT's config (base_model_name_or_path names the base)
    <cache>/adapters/<name>/adapter_model.safetensors  the weights: vLLM, LoRAX and PEFT load the folder as it is
    <cache>/adapters/<name>/compound.json              the manifest: base model and its weights fingerprint, method
                                                       and hyperparameters, training-data hash, dev score, sizes,
                                                       created, sha256 of every file

`<cache>/adapters` is `$COMPOUND_ADAPTERS` if set, else under `$COMPOUND_CACHE`, else under `~/.cache/compound`.
Writes go to a temporary folder that is renamed into place, so a crash never leaves a half-written adapter; loading checks every file's sha256 and the base model's weights
fingerprint, and reads only JSON and safetensors (nothing that can run code).

Example:
    >>> import compound as cp
    >>> from compound.testing import reverse_chats, tiny_served_lm
    >>> lm = cp.finetune(tiny_served_lm("doc-registry"), reverse_chats(), name="reverse-v1", max_steps=2).result()
    >>> cp.adapters.list()                        # doctest: +ELLIPSIS
    name        base          method  data      dev score  size      created
    reverse-v1  doc-registry    lora  ...
    >>> cp.adapters.load("reverse-v1").model       # a dspy.LM served by the base model's engine
    'local/doc-registry@reverse-v1'
"""

from __future__ import annotations

import builtins
import datetime
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from compound.fileio import replace_folder, sha256_file

__all__ = ["delete", "export", "list", "load", "manifest", "path", "read", "save", "serve"]

MANIFEST = "compound.json"
CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The registry folder: `cache_dir/adapters`, else `$COMPOUND_ADAPTERS`, else `$COMPOUND_CACHE/adapters`, else
    `~/.cache/compound/adapters`."""
    if cache_dir is None and os.environ.get("COMPOUND_ADAPTERS"):
        return Path(os.environ["COMPOUND_ADAPTERS"]).expanduser()
    base = cache_dir or os.environ.get("COMPOUND_CACHE") or Path.home() / ".cache" / "compound"
    return Path(base).expanduser() / "adapters"


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"adapter name {name!r} must be letters, digits, '.', '_' or '-' (up to 100 characters, "
                         "starting with a letter or digit), e.g. 'convert-v2'")
    return name


def path(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder of adapter `name` (PEFT's format: `PeftModel.from_pretrained(base, path)` loads it)."""
    folder = root(cache_dir) / check_name(name)
    if not (folder / MANIFEST).is_file():
        known = ", ".join(_names(cache_dir)) or "none"
        raise FileNotFoundError(f"no adapter {name!r} in {root(cache_dir)} (adapters there: {known}); "
                                "train one with cp.finetune(...) or check the name")
    return folder


def _names(cache_dir=None) -> builtins.list[str]:
    top = root(cache_dir)
    if not top.is_dir():
        return []
    return sorted(p.name for p in top.iterdir() if not p.name.startswith(".") and (p / MANIFEST).is_file())


def _write_json(file: Path, data: dict) -> None:
    with open(file, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True, default=_json_default)
        f.flush()
        os.fsync(f.fileno())


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value) if isinstance(value, (set, frozenset)) else builtins.list(value)
    if hasattr(value, "value"):  # enums such as peft's PeftType / TaskType
        return value.value
    raise TypeError(f"cannot write {type(value).__name__} {value!r} to JSON")


def write_peft_folder(folder: Path, config: dict, tensors: dict, extra: dict | None = None) -> dict[str, str]:
    """Write PEFT's two files (+ `extra` JSON files) into an existing folder, fsynced; returns their sha256."""
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(folder / WEIGHTS),
              metadata={"format": "pt"})
    with open(folder / WEIGHTS, "rb+") as f:
        os.fsync(f.fileno())
    _write_json(folder / CONFIG, config)
    for filename, data in (extra or {}).items():
        _write_json(folder / filename, data)
    return {f: sha256_file(folder / f) for f in (CONFIG, WEIGHTS)}


def save(name: str, config: dict, tensors: dict, info: dict, cache_dir: str | os.PathLike | None = None) -> Path:
    """Store an adapter atomically: PEFT's config and safetensors weights plus `compound.json` (`info` + sizes,
    created, file hashes). An adapter of the same name is replaced.

    Example:
        >>> import compound as cp
        >>> from compound.testing import reverse_chats, tiny_served_lm
        >>> _ = cp.finetune(tiny_served_lm("doc-save"), reverse_chats(), name="reverse-v1", max_steps=1).result()
        >>> config, tensors, info = cp.adapters.read("reverse-v1")
        >>> cp.adapters.save("reverse-copy", config, tensors, info).name
        'reverse-copy'
    """
    check_name(name)
    top = root(cache_dir)
    top.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=top, prefix=f".tmp-{name}-"))
    try:
        files = write_peft_folder(tmp, config, tensors)
        manifest_data = {
            "format": 1,
            **info,
            "name": name,
            "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "sizes": {"params": int(sum(t.numel() for t in tensors.values())),
                      "bytes": (tmp / WEIGHTS).stat().st_size},
            "files": files,
        }
        _write_json(tmp / MANIFEST, manifest_data)
        replace_folder(tmp, top / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return top / name


def manifest(name: str, cache_dir: str | os.PathLike | None = None) -> dict:
    """The manifest (`compound.json`) of adapter `name`."""
    with open(path(name, cache_dir) / MANIFEST) as f:
        return json.load(f)


def read(name: str, cache_dir: str | os.PathLike | None = None) -> tuple[dict, dict, dict]:
    """(PEFT config, tensors, manifest) of adapter `name`, after checking each file against its recorded sha256."""
    from safetensors.torch import load_file

    folder = path(name, cache_dir)
    info = manifest(name, cache_dir)
    for filename, digest in info.get("files", {}).items():
        file = folder / filename
        if not file.is_file() or sha256_file(file) != digest:
            raise ValueError(f"adapter {name!r} is corrupt: {filename} in {folder} does not match the sha256 recorded "
                             f"when it was saved; delete it with cp.adapters.delete({name!r}) and train it again")
    with open(folder / CONFIG) as f:
        config = json.load(f)
    return config, load_file(str(folder / WEIGHTS)), info


def list(cache_dir: str | os.PathLike | None = None):  # noqa: A001 - `cp.adapters.list()` reads best
    """Every stored adapter as a `Table` (name, base, method, data hash, dev score, size, created), oldest first.

    Example:
        >>> import compound as cp
        >>> table = cp.adapters.list()        # prints as text, renders as HTML in a notebook
        >>> [c.key for c in table.columns][:3]
        ['name', 'base', 'method']
    """
    from compound.observe import Column, Table

    table = Table([Column("name"), Column("base"), Column("method"), Column("data", "data"),
                   Column("dev_score", "dev score", ".3f"), Column("size"), Column("created")])
    rows = []
    for name in _names(cache_dir):
        try:
            m = manifest(name, cache_dir)
        except (OSError, ValueError):
            continue
        rows.append({
            "name": name,
            "base": m.get("base", {}).get("name", "?"),
            "method": m.get("method", "?"),
            "data": (m.get("data") or {}).get("sha256", "")[:8],
            "dev_score": (m.get("dev") or {}).get("score"),
            "size": _size(m.get("sizes", {}).get("bytes", 0)),
            "created": m.get("created", "")[:16].replace("T", " "),
        })
    for row in sorted(rows, key=lambda r: r["created"]):
        table.add_row(row)
    return table


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def delete(name: str, cache_dir: str | os.PathLike | None = None) -> None:
    """Remove adapter `name` from disk (engines already serving it keep it until the process ends)."""
    folder = path(name, cache_dir)
    trash = folder.with_name(f".deleted-{name}-{os.getpid()}")
    os.replace(folder, trash)  # one rename: the adapter is gone for every reader at once
    shutil.rmtree(trash, ignore_errors=True)


def export(name: str, destination: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """Copy adapter `name` to `destination` (a new folder) for vLLM (`--lora-modules`), LoRAX or PEFT.

    Example:
        >>> import compound as cp, tempfile
        >>> from compound.testing import reverse_chats, tiny_served_lm
        >>> _ = cp.finetune(tiny_served_lm("doc-export"), reverse_chats(), name="reverse-v1", max_steps=1).result()
        >>> folder = cp.adapters.export("reverse-v1", tempfile.mkdtemp() + "/reverse")
        >>> sorted(p.name for p in folder.iterdir())
        ['adapter_config.json', 'adapter_model.safetensors', 'compound.json']
    """
    config, tensors, info = read(name, cache_dir)
    destination = Path(destination)
    if destination.exists():
        raise FileExistsError(f"{destination} already exists; pass a new folder to cp.adapters.export")
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".tmp-{destination.name}-"))
    try:
        write_peft_folder(tmp, config, tensors, {MANIFEST: info})
        os.replace(tmp, destination)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return destination


# ---- serving ------------------------------------------------------------------------------------------------------
def loaded_model_of(lm):
    """The `LoadedModel` behind a `dspy.LM` made by `cp.LM` / `cp.zoo.lm`."""
    from compound.lm.dspy_lm import HFEngine

    spec = getattr(lm, "_engine_spec", None)
    if not isinstance(spec, HFEngine):
        raise TypeError(f"{getattr(lm, 'model', lm)!r} is not served by compound; adapters need a model served by "
                        "compound, e.g. cp.zoo.lm('small') or cp.LM('HuggingFaceTB/SmolLM2-135M-Instruct')")
    return spec.loaded


def serve(lm, name: str, config: dict, tensors: dict, **lm_kwargs):
    """Register an adapter on `lm`'s engine and return the `dspy.LM` that calls it: `local/<base>@<name>`.

    The adapter's weights fingerprint joins the base's in the LM's `metadata`, so DSPy's cache never answers a
    retrained adapter with old outputs. `lm_kwargs` override the copy's settings (e.g. `cache=False`).
    """
    from compound.lm.lora import serve_adapter

    loaded = loaded_model_of(lm)
    adapter = serve_adapter(loaded, check_name(name), config, tensors)
    metadata = {**(lm.kwargs.get("metadata") or {}), "compound_weights": f"{loaded.fingerprint}+{adapter.fingerprint}"}
    return lm.copy(model=f"local/{loaded.name}@{name}", metadata=metadata, **lm_kwargs)


def load(name: str, lm=None, cache_dir: str | os.PathLike | None = None):
    """Serve stored adapter `name` and return its `dspy.LM` (`local/<base>@<name>`).

    `lm` is the base model's LM; without it the base recorded in the manifest is loaded (or reused if loaded) with the
    settings the adapter was trained with. An adapter trained on other weights is refused, naming both.

    Example:
        >>> import compound as cp, dspy
        >>> from compound.testing import reverse_chats, tiny_served_lm
        >>> _ = cp.finetune(tiny_served_lm("doc-load"), reverse_chats(), name="reverse-v1", max_steps=1).result()
        >>> reverse = dspy.Predict("words -> reversed")
        >>> reverse.lm = cp.adapters.load("reverse-v1")
        >>> reverse.lm.model
        'local/doc-load@reverse-v1'
    """
    config, tensors, info = read(name, cache_dir)
    base = info.get("base", {})
    if lm is None:
        lm = _base_lm(name, base)
    loaded = loaded_model_of(lm)
    if base.get("fingerprint") and base["fingerprint"] != loaded.fingerprint:
        raise ValueError(
            f"adapter {name!r} was trained on {base.get('name')!r} (weights {base['fingerprint']}), but this LM serves "
            f"{loaded.name!r} (weights {loaded.fingerprint}); load it onto its own base: cp.adapters.load({name!r}) "
            "loads the base recorded in its manifest"
        )
    return serve(lm, name, config, tensors)


def _base_lm(name: str, base: dict):
    from compound.lm import LM
    from compound.lm.loading import find_loaded

    model_id = base.get("model_id", "")
    loaded = find_loaded(base.get("name", ""))
    if loaded is None and model_id.startswith("memory:"):
        raise ValueError(f"adapter {name!r} was trained on {base.get('name')!r}, a model handed to compound as an object; "
                         f"load it first (cp.LM(model, tokenizer=..., name={base.get('name')!r})) and pass it as `lm=`")
    device = str(loaded.device) if loaded is not None else "auto"
    return LM(loaded.model if loaded is not None and model_id.startswith("memory:") else model_id,
              tokenizer=loaded.tokenizer if loaded is not None else None, name=base.get("name"),
              revision=base.get("revision"), device=device, **base.get("lm_kwargs", {}))
