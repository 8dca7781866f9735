"""compound: DSPy pipelines of small fine-tuned models, served, routed, tuned and optimized inside a notebook.

Example:
    >>> import dspy, compound as cp
    >>> lm = cp.LM("HuggingFaceTB/SmolLM2-135M-Instruct")   # doctest: +SKIP
    >>> dspy.configure(lm=lm)                                 # doctest: +SKIP

Names are imported lazily so that `import compound` stays cheap (torch and dspy load on first use).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it; each capability adds its names here.
_LAZY: dict[str, str] = {
    "LM": "compound.lm",
    "Engine": "compound.lm",
    "EngineConfig": "compound.lm",
    "SamplingParams": "compound.lm",
    "loaded_models": "compound.lm",
}

__all__ = sorted([*_LAZY, "__version__"])

if TYPE_CHECKING:  # pragma: no cover
    from compound.lm import LM, Engine, EngineConfig, SamplingParams, loaded_models


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'compound' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
