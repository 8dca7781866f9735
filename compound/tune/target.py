"""What `cp.finetune` trains and how its dev score is measured.

A target is a DSPy predictor, a module (all its predictors, which must share one LM) or a `cp.LM`; in each case the
LM is served by compound's engine, and the adapter is trained on that engine's loaded model. Dev scores always go
through the engine: a DSPy program with the DSPy metric, or, for an LM fine-tuned on chat data, the share of
held-out chats whose greedy answer equals the expected one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dspy


@dataclass
class Target:
    """The loaded model to adapt, and (when known) the DSPy objects that use it."""

    loaded: Any  # compound.lm.LoadedModel
    lm: dspy.LM | None  # the base LM (None when DSPy's provider trains: it only wants a model string back)
    program: dspy.Module | None = None  # what a dev evaluation runs (the predictor or the module)
    predictors: list = field(default_factory=list)  # whose LM the result replaces
    label: str = "lm"  # the start of the adapter's default name


def resolve(target: Any, settings_lm: dspy.LM | None) -> Target:
    """A `Target` for a predictor, a module or an LM; clear errors for anything else."""
    from compound.adapters import loaded_model_of

    if isinstance(target, dspy.LM):
        return Target(loaded_model_of(target), target)
    if not isinstance(target, dspy.Module):
        raise TypeError(f"`target` must be a DSPy predictor (program.step), a dspy.Module or a cp.LM, "
                        f"got {type(target).__name__}")
    predictors = [p for _, p in target.named_predictors()]
    if not predictors:
        raise ValueError(f"{type(target).__name__} has no predictors to fine-tune")
    lms = {id(p.lm or settings_lm): p.lm or settings_lm for p in predictors}
    if None in lms.values():
        raise ValueError("the predictors to fine-tune have no LM: set one (program.step.lm = cp.zoo.lm('small')) "
                         "or dspy.configure(lm=...)")
    if len({lm.model for lm in lms.values()}) > 1:
        models = sorted({lm.model for lm in lms.values()})
        raise ValueError(f"the module's predictors use different LMs ({', '.join(models)}); fine-tune one predictor "
                         "at a time, e.g. cp.finetune(program.step, ...)")
    lm = next(iter(lms.values()))
    label = _label(target)
    return Target(loaded_model_of(lm), lm, target, predictors, label)


def _label(module: dspy.Module) -> str:
    if isinstance(module, dspy.Predict):
        return "-".join(module.signature.output_fields)[:40] or "predict"
    return type(module).__name__.lower()[:40]


def with_lm(target: Target, lm: dspy.LM) -> dspy.Module:
    """A copy of the target's program whose target predictors call `lm` (the user's program is left alone)."""
    program = target.program.deepcopy()
    ids = {id(p) for p in target.predictors}
    for original, (_, copy) in zip(target.program.named_predictors(), program.named_predictors()):
        if id(original[1]) in ids:
            copy.lm = lm
    return program


def program_score(program: dspy.Module, devset: Sequence, metric: Callable, threads: int) -> float:
    """Mean metric over `devset` (a failed call scores 0), computed like `dspy.Evaluate` but without its log lines."""
    from dspy.utils.parallelizer import ParallelExecutor

    def one(example):
        try:
            return float(metric(example, program(**example.inputs())))
        except Exception:
            return 0.0

    scores = ParallelExecutor(num_threads=threads, max_errors=len(devset) + 1, disable_progress_bar=True,
                              provide_traceback=False).execute(one, list(devset))
    return sum(s or 0.0 for s in scores) / max(1, len(devset))


def chat_score(loaded, adapter: str | None, encoded: Sequence, answers: Sequence[str]) -> float:
    """Share of held-out chats whose greedy completion (through the engine, on `adapter`) equals the answer."""
    from compound.lm.sampling import SamplingParams

    engine = loaded.engine
    seqs = [engine.submit(e.prompt, SamplingParams(max_tokens=len(e.answer) + 4), adapter) for e in encoded]
    hits = sum(s.future.result().text.strip() == a.strip() for s, a in zip(seqs, answers))
    return hits / max(1, len(answers))
