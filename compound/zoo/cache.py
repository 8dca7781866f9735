"""Building the zoo once and finding it again: cache folder, manifest, integrity check, atomic writes, a build lock.

Layout: `<cache>/zoo/<name>/` holds a `save_pretrained` folder (config, safetensors weights, tokenizer with its chat
template) and `manifest.json` with the recipe hash and the sha256 of every file. A folder whose manifest is missing,
whose recipe hash differs from the current recipe, or whose files do not match their hashes is rebuilt.

The cache root is, in order: the `cache_dir` argument, `$COMPOUND_CACHE`, `~/.cache/compound`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path

from compound.fileio import replace_folder, sha256_file
from compound.quiet import quiet_transformers
from compound.zoo.recipes import RECIPES, ZooRecipe, recipe_hash

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
_thread_lock = threading.Lock()


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the zoo lives: `cache_dir`, else `$COMPOUND_CACHE`, else `~/.cache/compound`; then `/zoo`."""
    base = cache_dir or os.environ.get("COMPOUND_CACHE") or Path.home() / ".cache" / "compound"
    return Path(base).expanduser() / "zoo"


def problem_with(folder: Path, recipe: ZooRecipe) -> str | None:
    """Why `folder` cannot be used for `recipe` (missing, other recipe, corrupt file), or None when it is sound."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        return "not built yet" if not folder.exists() else "no manifest"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        return f"unreadable manifest ({exc})"
    if manifest.get("recipe_hash") != recipe_hash(recipe):
        return "the recipe changed"
    for name, digest in manifest.get("files", {}).items():
        file = folder / name
        if not file.is_file():
            return f"{name} is missing"
        if sha256_file(file) != digest:
            return f"{name} is corrupt (sha256 mismatch)"
    if not any(name.endswith(".safetensors") for name in manifest.get("files", {})):
        return "manifest lists no safetensors weights"
    return None


def read_manifest(folder: Path) -> dict:
    return json.loads((folder / MANIFEST).read_text())


@contextlib.contextmanager
def build_lock(root: Path) -> Iterator[None]:
    """One builder at a time, across threads and processes (a notebook and pytest sharing a cache)."""
    root.mkdir(parents=True, exist_ok=True)
    with _thread_lock, open(root / ".build.lock", "w") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: threads are still serialized
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def save_atomically(folder: Path, model, tokenizer, recipe: ZooRecipe, extra: dict) -> dict:
    """Write weights (safetensors only), tokenizer and manifest to a temp folder, then swap it into place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.bos_token_id = None
        with quiet_transformers():
            model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        weights = hashlib.sha256("".join(files[n] for n in sorted(files) if n.endswith(".safetensors")).encode())
        manifest = {
            "name": recipe.name,
            "recipe_hash": recipe_hash(recipe),
            "recipe": asdict(recipe),
            "weights_sha256": weights.hexdigest(),
            "params": sum(p.numel() for p in model.parameters()),
            "files": files,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **extra,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a shared cache must stay readable
        replace_folder(tmp, folder)
        return manifest
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def ensure_built(
    names: Iterable[str],
    cache_dir: str | os.PathLike | None = None,
    *,
    recipes: dict[str, ZooRecipe] | None = None,
    force: bool = False,
    progress: bool = True,
) -> dict[str, Path]:
    """Folders of the named zoo models, building (in one go, sharing the tokenizer) those that are not sound.

    A model grown from another (`ZooRecipe.grow_from`) needs that one too: it is checked, and built first if needed.
    """
    recipes = recipes or RECIPES
    names = list(dict.fromkeys(names))
    for name in names:
        if name not in recipes:
            raise ValueError(f"no zoo model {name!r}; choose one of {sorted(recipes)}")
    needed = _with_bases([recipes[n] for n in names])
    root = cache_root(cache_dir)
    folders = {name: root / name for name in needed}

    def todo() -> dict[str, str]:
        reasons = {n: force and "forced" or problem_with(folders[n], r) for n, r in needed.items()}
        return {n: r for n, r in reasons.items() if r}

    if todo():
        with build_lock(root):
            stale = todo()  # another process may have built them while we waited for the lock
            if stale:
                from compound.zoo.builder import build_models

                for name, reason in stale.items():
                    log.info("building zoo model %r in %s: %s", name, folders[name], reason)
                build_models([needed[n] for n in stale], folders, progress=progress)
    return {name: folders[name] for name in names}


def _with_bases(recipes: list[ZooRecipe]) -> dict[str, ZooRecipe]:
    """The recipes plus those they grow from, bases first; one recipe per name."""
    ordered: dict[str, ZooRecipe] = {}

    def add(recipe: ZooRecipe) -> None:
        if recipe.grow_from is not None:
            add(recipe.grow_from)
        if ordered.setdefault(recipe.name, recipe) != recipe:
            raise ValueError(f"two different zoo recipes are both named {recipe.name!r}")

    for recipe in recipes:
        add(recipe)
    return ordered
