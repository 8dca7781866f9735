"""compound.lm — serve Hugging Face models to DSPy from an in-process continuous-batching engine.

Example:
    >>> import dspy, compound as cp
    >>> lm = cp.LM("HuggingFaceTB/SmolLM2-135M-Instruct")     # doctest: +SKIP
    >>> dspy.configure(lm=lm)                                 # doctest: +SKIP
"""

from compound.lm.dspy_lm import LM, AsyncHFEngine, HFEngine, engine_of
from compound.lm.config import EngineConfig
from compound.lm.engine import Engine, EngineClosedError, EngineDeadError
from compound.lm.loading import LoadedModel, loaded_models, pick_device, pick_dtype
from compound.lm.prompt import render_prompt
from compound.lm.sampling import SamplingParams
from compound.lm.sequence import Result
from compound.lm.stats import EngineStats

__all__ = [
    "LM",
    "AsyncHFEngine",
    "Engine",
    "EngineClosedError",
    "EngineConfig",
    "EngineDeadError",
    "EngineStats",
    "HFEngine",
    "LoadedModel",
    "Result",
    "SamplingParams",
    "engine_of",
    "loaded_models",
    "pick_device",
    "pick_dtype",
    "render_prompt",
]
