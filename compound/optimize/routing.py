"""Keep per-predictor LM assignments through an optimizer, on copies of the program recognized by lineage.

DSPy optimizers copy programs with `reset_copy()`, which sets every `Predict.lm` to None (BootstrapFewShot,
LabeledFewShot, RandomSearch, ...); the copies then run on `dspy.settings.lm` and the returned program has lost
its routing. `compound` records `{predictor name: lm}` before compiling, re-applies it to every copy of the
program the optimizer runs (so bootstrapped demos come from the intended models) and to the result.

Which modules are copies of the program: compound marks each predictor of its working copy with a lineage token,
an attribute that `deepcopy()` and `reset_copy()` carry along. Modules the optimizer or the metric build themselves
(MIPROv2's instruction proposer, an LLM-judge metric) have no token and keep their own LMs, even when their
predictors happen to have the same names.
"""

from __future__ import annotations

import uuid
from typing import Any

import dspy

LINEAGE_ATTR = "_compound_lineage"


def predictor_lms(program: dspy.Module) -> dict[str, Any]:
    """`{predictor name: lm}` for every predictor of `program` that has its own LM."""
    return {name: pred.lm for name, pred in program.named_predictors() if pred.lm is not None}


def apply_lms(program: dspy.Module, lms: dict[str, Any], *, replace_copies: bool = True) -> int:
    """Give each named predictor of `program` its LM from `lms`; returns how many predictors changed.

    A predictor whose LM is missing gets the recorded LM object back; with `replace_copies`, so does one whose LM
    is a copy of it (`deepcopy()` copies LMs; same model string). Mid-run, copies stay: optimizers may assign
    `lm.copy(temperature=...)` on purpose. One the optimizer replaced with another model (BootstrapFinetune's
    fine-tuned `local/name@adapter`) keeps it.
    """
    changed = 0
    for name, pred in program.named_predictors():
        lm = lms.get(name)
        if lm is None or pred.lm is lm:
            continue
        if pred.lm is not None and (not replace_copies or getattr(pred.lm, "model", None) != getattr(lm, "model", None)):
            continue
        pred.lm = lm
        changed += 1
    return changed


def mark_lineage(program: dspy.Module) -> str:
    """Tag every predictor of `program` (compound's own working copy) with a new lineage token; returns it."""
    token = uuid.uuid4().hex
    for _, pred in program.named_predictors():
        setattr(pred, LINEAGE_ATTR, token)
    return token


def clear_lineage(program: dspy.Module) -> None:
    """Remove the lineage tokens (from the program handed back to the user)."""
    for _, pred in program.named_predictors():
        if hasattr(pred, LINEAGE_ATTR):
            delattr(pred, LINEAGE_ATTR)


def of_lineage(module: Any, token: str) -> bool:
    """Whether `module` descends from the program marked with `token`: a dspy.Module whose predictors all carry it."""
    if not isinstance(module, dspy.Module):
        return False
    try:
        predictors = [pred for _, pred in module.named_predictors()]
    except Exception:  # a half-built module mid-copy; not ours to fix
        return False
    return bool(predictors) and all(getattr(pred, LINEAGE_ATTR, None) == token for pred in predictors)
