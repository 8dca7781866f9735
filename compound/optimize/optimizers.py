"""Which DSPy optimizer to run, built from a name or taken as an instance, and how each one is stopped."""

from __future__ import annotations

import copy
import difflib
import inspect
from dataclasses import dataclass
from typing import Any, Callable

import dspy
from dspy.teleprompt import Teleprompter

# The optimizers cp.optimize runs and tracks, by their DSPy class names. Names match exactly or case-insensitively
# ("MiproV2" is MIPROv2); anything else is an error that names the closest one, never a silent guess.
OPTIMIZERS = ("BootstrapFewShot", "BootstrapFewShotWithRandomSearch", "COPRO", "GEPA", "LabeledFewShot", "MIPROv2")
# Optimizers compound cannot watch or stop with their best result kept, and why.
REFUSED = {
    "SIMBA": (
        "SIMBA evaluates its candidates in its own batches, not through dspy.Evaluate, so cp.optimize could neither "
        "show its trials nor keep its best program on Stop"
    ),
}


@dataclass(frozen=True)
class Strategy:
    """How a stop request reaches one optimizer.

    gate_bootstrap: end BootstrapFewShot's bootstrapping pass at the next example, then let compile() finish (its own
        graceful path: the demos bootstrapped so far become the result).
    gepa_stopper: add a GEPA stop callback; GEPA ends before its next iteration and returns its best candidate.
    abort_on_stop: raise StopOptimization from the next LM call or evaluation (for optimizers whose loop has no stop
        of its own, e.g. MIPROv2's optuna study, which marks the running trial failed and ends) and return the best
        program evaluated so far.
    evaluation_trials: each dspy.Evaluate call is a trial row (False where the optimizer reports its own trials).
    """

    gate_bootstrap: bool = False
    gepa_stopper: bool = False
    abort_on_stop: bool = True
    evaluation_trials: bool = True


def strategy_for(optimizer: Teleprompter) -> Strategy:
    if type(optimizer) in (dspy.BootstrapFewShot, dspy.LabeledFewShot):
        return Strategy(gate_bootstrap=type(optimizer) is dspy.BootstrapFewShot, abort_on_stop=False)
    if isinstance(optimizer, dspy.GEPA):
        # GEPA's stopper only acts between iterations, which can take many seconds (minibatch evaluations, a
        # reflection call, a full valset evaluation); aborting at the next LM call keeps Stop prompt, and the
        # best candidate GEPA reported on its valset is rebuilt as the result.
        return Strategy(gepa_stopper=True, abort_on_stop=True, evaluation_trials=False)
    return Strategy(abort_on_stop=True)


def optimizer_class(name: str) -> type[Teleprompter]:
    """The DSPy optimizer class called `name` (exactly, or ignoring case).

    Example:
        >>> optimizer_class("MiproV2").__name__
        'MIPROv2'
        >>> optimizer_class("mipro")
        Traceback (most recent call last):
        ...
        ValueError: unknown optimizer 'mipro'; did you mean 'MIPROv2'? cp.optimize runs BootstrapFewShot, BootstrapFewShotWithRandomSearch, COPRO, GEPA, LabeledFewShot, MIPROv2 (or pass an optimizer instance)
    """
    by_lower = {known.lower(): known for known in (*OPTIMIZERS, *REFUSED)}
    exact = by_lower.get(name.lower())
    if exact in REFUSED:
        raise ValueError(f"cp.optimize does not run {exact}: {REFUSED[exact]}; call dspy.{exact}(...).compile(...) directly")
    if exact is None:
        closest = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.5)
        hint = f"did you mean {by_lower[closest[0]]!r}? " if closest else ""
        raise ValueError(
            f"unknown optimizer {name!r}; {hint}cp.optimize runs {', '.join(OPTIMIZERS)} (or pass an optimizer instance)"
        )
    return getattr(dspy, exact)


def _parameters(fn: Callable[..., Any]) -> set[str]:
    return {p.name for p in inspect.signature(fn).parameters.values() if p.kind is not p.VAR_KEYWORD} - {"self"}


def gepa_metric(metric: Callable[..., Any]) -> Callable[..., Any]:
    """GEPA calls metric(gold, pred, trace, pred_name, pred_trace); accept ordinary 2- or 3-argument metrics too."""
    try:
        inspect.signature(metric).bind(None, None, None, None, None)
        return metric
    except TypeError:
        pass
    takes_trace = len(inspect.signature(metric).parameters) >= 3

    def metric_for_gepa(gold, pred, trace=None, pred_name=None, pred_trace=None):
        return metric(gold, pred, trace) if takes_trace else metric(gold, pred)

    metric_for_gepa.__name__ = getattr(metric, "__name__", "metric")
    return metric_for_gepa


def working_copy(optimizer: Teleprompter) -> Teleprompter:
    """A shallow copy of the user's optimizer for one run: compound hooks the copy, never the user's object."""
    return copy.copy(optimizer)


def build_optimizer(
    optimizer: str | Teleprompter, metric: Callable[..., Any] | None, kwargs: dict[str, Any]
) -> tuple[Teleprompter, dict[str, Any]]:
    """Return (optimizer instance, compile kwargs); `kwargs` are split between the constructor and compile()."""
    if isinstance(optimizer, Teleprompter):
        refused = REFUSED.get(type(optimizer).__name__)
        if refused:
            raise ValueError(f"cp.optimize does not run {type(optimizer).__name__}: {refused}; call its compile() directly")
        unknown = set(kwargs) - _parameters(type(optimizer).compile)
        if unknown:
            raise TypeError(
                f"{type(optimizer).__name__}.compile() takes no {sorted(unknown)}; "
                "pass optimizer settings to its constructor, or give the optimizer by name"
            )
        if metric is not None and getattr(optimizer, "metric", None) not in (None, metric):
            raise ValueError(
                f"`metric` differs from the metric the {type(optimizer).__name__} instance was built with; "
                "pass only one of them"
            )
        return optimizer, dict(kwargs)
    if not isinstance(optimizer, str):
        raise TypeError(f"`optimizer` must be a name like 'MIPROv2' or a dspy optimizer, got {type(optimizer).__name__}")
    cls = optimizer_class(optimizer)
    init_names, compile_names = _parameters(cls.__init__), _parameters(cls.compile)
    unknown = set(kwargs) - init_names - compile_names
    if unknown:
        raise TypeError(f"{cls.__name__} takes no {sorted(unknown)}; its settings are {sorted(init_names | compile_names)}")
    init = {k: v for k, v in kwargs.items() if k in init_names}
    compile_kwargs = {k: v for k, v in kwargs.items() if k not in init_names}
    if "metric" in init_names:
        if metric is None:
            raise ValueError(f"{cls.__name__} needs a `metric`, e.g. metric=lambda example, pred, trace=None: ...")
        init["metric"] = gepa_metric(metric) if cls is dspy.GEPA else metric
    if cls is dspy.MIPROv2 and "num_candidates" in init and "auto" not in init:
        init["auto"] = None  # explicit candidate/trial counts replace the "light" preset
    if cls is dspy.GEPA:
        if not {"auto", "max_full_evals", "max_metric_calls"} & set(init):
            init["auto"] = "light"
        if init.get("reflection_lm") is None and init.get("instruction_proposer") is None:
            if dspy.settings.lm is None:
                raise ValueError("GEPA needs `reflection_lm=` (or dspy.configure(lm=...) to reflect with the task LM)")
            init["reflection_lm"] = dspy.settings.lm
    return cls(**init), compile_kwargs
