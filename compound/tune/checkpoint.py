"""Resumable training checkpoints, written so that an interrupt or a crash never leaves a half-written one.

    <cache>/adapters/.runs/<name>/last/   the newest complete checkpoint: PEFT's adapter folder (loadable as is),
                                         optimizer.safetensors and trainer_state.json (step, epoch, curves, best)
    <cache>/adapters/.runs/<name>/best/   the adapter with the best dev score so far, and that score

Each is written into a temporary folder next to it and renamed into place (`compound.fileio.replace_folder`),
so the folder under its final name is always complete. Only JSON and safetensors are read back.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from compound.adapters import CONFIG, WEIGHTS, root, write_peft_folder
from compound.fileio import replace_folder

STATE = "trainer_state.json"
OPTIMIZER = "optimizer.safetensors"


def run_dir(name: str, cache_dir=None) -> Path:
    return root(cache_dir) / ".runs" / name


def write(folder: Path, config: dict, tensors: dict, state: dict, optimizer: tuple[dict, dict] | None = None) -> None:
    """Write one checkpoint folder atomically: PEFT files, trainer state, optionally the optimizer."""
    from safetensors.torch import save_file

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".tmp-{folder.name}-"))
    try:
        extra = {STATE: state}
        if optimizer is not None:
            optimizer_tensors, optimizer_meta = optimizer
            save_file({k: v.contiguous() for k, v in optimizer_tensors.items()}, str(tmp / OPTIMIZER))
            with open(tmp / OPTIMIZER, "rb+") as f:
                os.fsync(f.fileno())
            extra[STATE] = {**state, "optimizer": optimizer_meta}
        write_peft_folder(tmp, config, tensors, extra)
        replace_folder(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read(folder: Path) -> tuple[dict, dict, dict, dict]:
    """(PEFT config, adapter tensors, trainer state, optimizer tensors) of a checkpoint folder."""
    from safetensors.torch import load_file

    if not (folder / STATE).is_file():
        raise FileNotFoundError(f"no complete checkpoint in {folder}")
    with open(folder / CONFIG) as f:
        config = json.load(f)
    with open(folder / STATE) as f:
        state = json.load(f)
    optimizer = load_file(str(folder / OPTIMIZER)) if (folder / OPTIMIZER).is_file() else {}
    return config, load_file(str(folder / WEIGHTS)), state, optimizer


def clean(run: Path) -> None:
    """Remove temporary folders a killed process left behind (complete checkpoints are never under a temp name)."""
    if run.is_dir():
        for tmp in run.glob(".tmp-*"):
            shutil.rmtree(tmp, ignore_errors=True)
