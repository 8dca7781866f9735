"""How a saved or pickled compound LM comes back: its reference re-attaches to the model loaded in this process
(or loads it once, refusing other weights), and brings along the DSPy adapter the model's prompts need."""

from __future__ import annotations

import importlib
import logging
import warnings

import dspy

from compound.lm.config import EngineConfig
from compound.lm.loading import LoadedModel, find_loaded, load
from compound.lm.refs import resolve, scheme_of

log = logging.getLogger("compound.lm")


def adapter_class(path: str | None):
    """The DSPy adapter class a saved reference names; only compound's and DSPy's own adapters are imported."""
    if not path:
        return None
    module, _, qualname = path.partition(":")
    if module.split(".")[0] not in {"compound", "dspy"}:
        raise ValueError(f"refusing to import adapter {path!r} from a saved program: only compound or dspy adapters")
    cls = getattr(importlib.import_module(module), qualname)
    if not (isinstance(cls, type) and issubclass(cls, dspy.Adapter)):
        raise ValueError(f"{path!r} is not a dspy.Adapter")
    return cls


def adopt_adapter(path: str | None) -> None:
    """A saved program's model needs this DSPy adapter: make it DSPy's default when none is chosen, warn otherwise.

    DSPy 3.4 picks the adapter from its settings only (`dspy.settings.adapter`, else ChatAdapter), never per LM or
    per module, so this is the one place a loaded program can bring its prompt format along.
    """
    cls = adapter_class(path)
    if cls is None:
        return
    current = dspy.settings.adapter
    if isinstance(current, cls):
        return
    if current is None:
        try:
            dspy.configure(adapter=cls())
            log.info("compound: a loaded model needs %s prompts; set it as DSPy's adapter", cls.__name__)
            return
        except RuntimeError:  # configured from another thread or task first
            pass
    chosen = type(current).__name__ if current is not None else "set elsewhere"
    warnings.warn(
        f"a loaded model reads {cls.__name__} prompts but DSPy's adapter is {chosen}; "
        f"use dspy.configure(adapter={cls.__name__}()) (or dspy.context) where you call it",
        stacklevel=3,
    )


def attach(reference: dict) -> LoadedModel:
    """The model a reference names: the one already loaded in this process, else loaded now (once).

    Weights whose fingerprint differs from the saved one are refused: a program never runs on other weights.
    """
    name, fingerprint = reference["name"], reference.get("fingerprint")
    loaded = find_loaded(name, fingerprint)
    if loaded is None:
        source = reference.get("source") or reference["model_id"]  # "model_id": saved by earlier versions
        if source.startswith("memory:"):
            raise ValueError(
                f"model {name!r} was handed to compound as an object and is not loaded in this process; "
                f"call compound.LM(model, tokenizer=..., name={name!r}) before loading the program"
            )
        device, path, defaults = reference.get("device", "auto"), source, None
        if scheme_of(source):
            resolved = resolve(source)
            path, device, defaults = resolved.path, resolved.device or device, resolved.lm_defaults
        config = reference.get("engine_config")
        loaded = load(path, name=name, revision=reference.get("revision"), device=device,
                      dtype=reference.get("dtype", "auto"), engine_config=EngineConfig(**config) if config else None,
                      source=source, dspy_adapter=reference.get("dspy_adapter"), lm_defaults=defaults)
        if fingerprint and loaded.fingerprint != fingerprint:
            raise ValueError(
                f"the weights at {source!r} are not the ones this program was saved with (fingerprint "
                f"{loaded.fingerprint}, saved {fingerprint}): they were retrained or replaced. Load the original "
                "weights, or rebuild the program's LMs with compound.LM(...) and re-run its optimizer."
            )
    adopt_adapter(loaded.dspy_adapter)
    return loaded
