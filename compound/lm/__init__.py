"""compound.lm — serve Hugging Face models to DSPy from an in-process continuous-batching engine.

Example:
    >>> import dspy, compound as cp
    >>> lm = cp.LM("HuggingFaceTB/SmolLM2-135M-Instruct")     # doctest: +SKIP
    >>> dspy.configure(lm=lm)                                 # doctest: +SKIP

Names load lazily: `compound.lm.engine` and the other engine modules never import DSPy; only the DSPy boundary
(`LM`, `HFEngine`, `compound.lm.dspy_lm`) does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from compound._lazy import lazy_names

_LAZY = {
    "LM": "compound.lm.dspy_lm",
    "AsyncHFEngine": "compound.lm.dspy_lm",
    "HFEngine": "compound.lm.dspy_lm",
    "engine_of": "compound.lm.dspy_lm",
    "Engine": "compound.lm.engine",
    "EngineConfig": "compound.lm.config",
    "ContextLengthError": "compound.lm.errors",
    "EngineClosedError": "compound.lm.errors",
    "EngineDeadError": "compound.lm.errors",
    "EngineError": "compound.lm.errors",
    "InvalidRequestError": "compound.lm.errors",
    "RequestAbortedError": "compound.lm.errors",
    "RequestFailedError": "compound.lm.errors",
    "UnsupportedArchitectureError": "compound.lm.errors",
    "EngineStats": "compound.lm.stats",
    "LoadedModel": "compound.lm.loading",
    "close": "compound.lm.loading",
    "loaded_models": "compound.lm.loading",
    "pick_device": "compound.lm.loading",
    "pick_dtype": "compound.lm.loading",
    "register_resolver": "compound.lm.refs",
    "render_prompt": "compound.lm.prompt",
    "Result": "compound.lm.sequence",
    "SamplingParams": "compound.lm.sampling",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from compound.lm.config import EngineConfig
    from compound.lm.dspy_lm import LM, AsyncHFEngine, HFEngine, engine_of
    from compound.lm.engine import Engine
    from compound.lm.errors import (
        ContextLengthError,
        EngineClosedError,
        EngineDeadError,
        EngineError,
        InvalidRequestError,
        RequestAbortedError,
        RequestFailedError,
        UnsupportedArchitectureError,
    )
    from compound.lm.loading import LoadedModel, close, loaded_models, pick_device, pick_dtype
    from compound.lm.prompt import render_prompt
    from compound.lm.refs import register_resolver
    from compound.lm.sampling import SamplingParams
    from compound.lm.sequence import Result
    from compound.lm.stats import EngineStats


__getattr__, __dir__ = lazy_names(__name__, _LAZY, __all__)
