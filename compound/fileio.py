"""Files that are never half-written: hashing and swapping a finished temporary folder into place.

The zoo cache, the adapter registry and training checkpoints all write into a temporary folder next to the final one
and then rename it into place, so a crash or an interrupt leaves either the old folder or the new one, never a mix.

Example:
    >>> import tempfile, pathlib
    >>> top = pathlib.Path(tempfile.mkdtemp())
    >>> tmp = pathlib.Path(tempfile.mkdtemp(dir=top)); _ = (tmp / "a.txt").write_text("hi")
    >>> replace_folder(tmp, top / "final"); sha256_file(top / "final" / "a.txt")[:8]
    '8f434346'
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def replace_folder(tmp: Path, final: Path) -> None:
    """Move the complete folder `tmp` to `final` (same parent), replacing what was there, and fsync the parent."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}-old-{os.getpid()}-{time.monotonic_ns()}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
