"""Keep per-predictor LM assignments through an optimizer.

DSPy optimizers copy programs with `reset_copy()`, which sets every `Predict.lm` to None (BootstrapFewShot,
LabeledFewShot, RandomSearch, ...); the copies then run on `dspy.settings.lm` and the returned program has lost
its routing. `compound` records `{predictor name: lm}` before compiling, re-applies it to every copy of the
program the optimizer runs (so bootstrapped demos come from the intended models) and to the result.
"""

from __future__ import annotations

from typing import Any

import dspy


def predictor_lms(program: dspy.Module) -> dict[str, Any]:
    """`{predictor name: lm}` for every predictor of `program` that has its own LM."""
    return {name: pred.lm for name, pred in program.named_predictors() if pred.lm is not None}


def apply_lms(program: dspy.Module, lms: dict[str, Any], *, replace_copies: bool = True) -> int:
    """Give each named predictor of `program` its LM from `lms`; returns how many predictors changed.

    A predictor whose LM is missing gets the recorded LM object back; with `replace_copies`, so does one whose LM
    is a copy of it (`deepcopy()` copies LMs; same model string). Mid-run, copies stay: optimizers such as SIMBA
    assign `lm.copy(temperature=...)` on purpose. One the optimizer replaced with another model (BootstrapFinetune's
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


def same_structure(module: Any, names: frozenset[str]) -> bool:
    """Whether `module` is a copy of the optimized program: a dspy.Module with exactly these predictor names."""
    if not isinstance(module, dspy.Module):
        return False
    try:
        return frozenset(name for name, _ in module.named_predictors()) == names
    except Exception:  # a half-built module mid-copy; not ours to fix
        return False
