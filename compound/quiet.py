"""Keeping compound's output quiet: third-party progress bars that compound's own messages make redundant.

Importing this module imports nothing heavy; transformers loads only when the context manager is entered.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide transformers' own progress bars ("Loading weights") inside the block; restore the setting after.

    Loading a model from disk takes milliseconds to seconds, so the bar only clutters notebooks and logs (a saved
    notebook keeps every frame of it). Downloads from the hub keep huggingface_hub's bars: they are worth watching.

    Example:
        >>> from transformers.utils import logging as hf_logging
        >>> with quiet_transformers():
        ...     type(hf_logging.tqdm(range(3))).__name__
        'EmptyTqdm'
    """
    from transformers.utils import logging as hf_logging

    def no_bar(_factory, args, kwargs):
        return hf_logging.EmptyTqdm(*args, **kwargs)

    if not hasattr(hf_logging, "set_tqdm_hook"):  # older transformers: no hook, so every bar goes, downloads' too
        was_enabled = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            yield
        finally:
            if was_enabled:
                hf_logging.enable_progress_bar()
        return
    previous = hf_logging.set_tqdm_hook(no_bar)
    try:
        yield
    finally:
        hf_logging.set_tqdm_hook(previous)
