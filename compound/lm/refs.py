"""Portable references to models: what a saved or pickled compound LM records, and how another process finds the
model again. Plain Python (no torch, no DSPy), so any package can register a resolver cheaply.

A reference is a string:
  - `zoo:small`: a model a registered resolver knows (`compound.zoo` registers `zoo:` when imported, and is
    imported on the first `zoo:` reference, so `compound.lm` never imports the zoo itself);
  - `HuggingFaceTB/SmolLM2-135M-Instruct`: a hub id (the revision is recorded beside it);
  - `./models/tuned`: a folder, relative to the working directory when it lies under it, absolute otherwise;
  - `memory:<name>`: a model object handed to `compound.LM`; it only re-attaches where that object is loaded.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Resolved:
    """What a resolver says about a reference: where the weights are and how to serve them."""

    path: str  # a folder or hub id that transformers can load
    name: str  # the engine's name: DSPy sees the model string `local/<name>`
    lm_defaults: dict = field(default_factory=dict)  # `dspy.LM` keyword defaults (max_tokens, stop, cache, ...)
    device: str | None = None  # where it is served unless the caller says otherwise
    dspy_adapter: str | None = None  # "module:Class" of the DSPy adapter its prompts need (None: DSPy's default)


_RESOLVERS: dict[str, Callable[[str], Resolved]] = {}
_PROVIDERS = {"zoo": "compound.zoo"}  # scheme -> the module that registers it when imported
_LOCK = threading.Lock()


def register_resolver(scheme: str, resolve: Callable[[str], Resolved]) -> None:
    """Make `<scheme>:<rest>` model references resolvable: `resolve(rest)` returns a `Resolved`.

    Example:
        >>> from compound.lm.refs import Resolved, register_resolver, resolve
        >>> register_resolver("demo", lambda rest: Resolved(path=f"/models/{rest}", name=f"demo-{rest}"))
        >>> resolve("demo:tiny").name
        'demo-tiny'
    """
    with _LOCK:
        _RESOLVERS[scheme] = resolve


def scheme_of(reference: str) -> str | None:
    """The scheme of a `<scheme>:<rest>` reference, if a resolver handles it (or would, once its module loads)."""
    scheme, sep, _ = reference.partition(":")
    return scheme if sep and (scheme in _RESOLVERS or scheme in _PROVIDERS) else None


def resolve(reference: str) -> Resolved:
    """Resolve a `<scheme>:<rest>` reference, importing the scheme's module on first use."""
    scheme, _, rest = reference.partition(":")
    if scheme not in _RESOLVERS and scheme in _PROVIDERS:
        importlib.import_module(_PROVIDERS[scheme])
    resolver = _RESOLVERS.get(scheme)
    if resolver is None:
        raise ValueError(f"no resolver for {reference!r}; known schemes: {sorted({*_RESOLVERS, *_PROVIDERS})}")
    return resolver(rest)


def portable_folder(path: str) -> str:
    """A folder as a saved program should record it: `./relative` under the working directory, else absolute."""
    full, here = os.path.abspath(path), os.path.abspath(os.getcwd())
    if full == here or full.startswith(here + os.sep):
        return "./" + os.path.relpath(full, here).replace(os.sep, "/")
    return full
