"""`cp.Routed(module, router, candidates, threshold)`: a DSPy module that sends each call to the model its router picks.

The routed module (a predictor or any DSPy module) runs under `dspy.context(lm=<chosen model>)`, so every LM call
it makes lands on that model; the candidates live on the `Routed` itself, not on predictors, which is why optimizers
that reset per-predictor LMs (`reset_copy()`: BootstrapFewShot, LabeledFewShot, ...) cannot undo the routing. Each
call's model shows in the LM history entries (`routed.history[-1]["model"]`), in `routed.calls` and in `cp.show`.

State: the router and threshold are a DSPy `Parameter` (`routed.route`), so `program.save("p.json")` writes them as
JSON (arrays as a safetensors blob) and `program.load(...)` restores them, refusing router classes that are not
compound's. The candidate LMs come from the code that builds the program, as DSPy's own LMs do.

Example:
    >>> import dspy, compound as cp
    >>> routed = cp.Routed(dspy.Predict("ticket -> order_id"), router, [tiny, small], threshold=0.1)  # doctest: +SKIP
    >>> routed(ticket="Where is order 12345?").order_id                                            # doctest: +SKIP
    '12345'
"""

from __future__ import annotations

import math
import threading
from collections import Counter, deque
from typing import Any

import dspy
from dspy.predict.parameter import Parameter

from compound.route.base import Router, from_state
from compound.route.cascade import CascadeRouter
from compound.route.collector import (answer_key, candidate_names, mean_logprob, query_text, run_once,
                                    verifier_confidence)


class RouteState(Parameter):
    """The learnable part of a `Routed`: its router and threshold (saved with the program, kept by `reset()`)."""

    def __init__(self, router: Router, threshold: float, models: list[str]):
        self.router, self.threshold, self.models = router, float(threshold), list(models)

    def reset(self) -> None:
        pass  # optimizers reset prompts and demos; the routing is not theirs to clear

    def dump_state(self, json_mode: bool = True) -> dict[str, Any]:
        return {"router": self.router.to_state(), "threshold": self.threshold, "models": self.models}

    def load_state(self, state: dict[str, Any]) -> RouteState:
        if list(state.get("models", [])) != self.models:
            raise ValueError(f"the saved routing is between {state.get('models')}, this program's candidates are "
                             f"{self.models}; build cp.Routed with the same candidates before loading")
        self.router, self.threshold = from_state(state["router"]), float(state["threshold"])
        return self


class RouteLog:
    """Thread-safe per-model call counts and the last few (model, query) decisions of one `Routed`."""

    def __init__(self, keep: int = 20):
        self.counts: Counter[str] = Counter()
        self.recent: deque[tuple[str, str]] = deque(maxlen=keep)
        self._lock = threading.Lock()

    def add(self, model: str, query: str) -> None:
        with self._lock:
            self.counts[model] += 1
            self.recent.append((model, query[:120]))

    def __deepcopy__(self, memo) -> RouteLog:
        return RouteLog(self.recent.maxlen or 20)  # a copy of the program starts its own record

    def __getstate__(self) -> dict[str, Any]:
        return {"keep": self.recent.maxlen}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state.get("keep") or 20)


def _check_models(router: Router, names: list[str]) -> None:
    models = getattr(router, "models_", None)
    if models is None:
        raise ValueError(f"the router is not fitted; call {type(router).__name__}(...).fit(routing_data) first")
    if sorted(models) != sorted(names) and not (all(m == f"model_{j}" for j, m in enumerate(models))
                                                and len(models) == len(names)):
        raise ValueError(f"the router was fitted on models {models} but the candidates are {names}; pass the same "
                         "models (a {name: lm} dict names them) in any order")


class Routed(dspy.Module):
    """Route every call of `module` to one of `candidates` with a fitted router.

    Args:
        module: a predictor or DSPy module; its predictors' own LMs are cleared (the routing picks the model).
        router: a fitted compound router (`cp.route.KNNRouter().fit(data)`, ..., `CascadeRouter`).
        candidates: the LMs, as a list (named by model string) or `{name: lm}`, matching the router's models.
        threshold: see `compound.route.base` (learned routers) or `CascadeRouter` (defer below this confidence);
            `report.threshold_for(quality=0.95)` picks one.
        verifier: for a cascade on "verifier" confidence: a callable `(inputs, prediction) -> float` or DSPy module.

    Example:
        >>> program.extract = cp.Routed(program.extract, router, [tiny, small],
        ...                             threshold=report.threshold_for(quality=0.95))   # doctest: +SKIP
        >>> program.extract.calls                                                       # doctest: +SKIP
        {'zoo-tiny': 61, 'zoo-small': 39}
    """

    def __init__(self, module: dspy.Module, router: Router, candidates, threshold: float = 0.0, *,
                 verifier: Any = None):
        super().__init__()
        if not isinstance(module, dspy.Module):
            raise TypeError(f"`module` must be a DSPy predictor or module, got {type(module).__name__}")
        if isinstance(module, Routed):
            raise TypeError("`module` is already Routed; route its inner module instead: Routed(routed.module, ...)")
        if not isinstance(router, Router):
            raise TypeError(f"`router` must be a compound router (cp.route.KNNRouter, ...), got {type(router).__name__}")
        names, lms = candidate_names(candidates)
        _check_models(router, names)
        if isinstance(router, CascadeRouter) and router.confidence == "verifier" and verifier is None:
            raise ValueError("a cascade on 'verifier' confidence needs `verifier=` (a callable or DSPy module)")
        for _, predictor in module.named_predictors():
            predictor.lm = None  # the chosen candidate reaches them through dspy.context
        self.module = module
        self.candidates = lms
        self.route = RouteState(router, threshold, names)
        self.verifier = verifier
        self.log = RouteLog()

    # ---- public state ------------------------------------------------------------------------------------------
    @property
    def router(self) -> Router:
        return self.route.router

    @property
    def threshold(self) -> float:
        return self.route.threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        self.route.threshold = float(value)

    @property
    def models(self) -> list[str]:
        return self.route.models

    @property
    def calls(self) -> dict[str, int]:
        """How many calls each model answered so far (this copy of the program)."""
        return {m: self.log.counts.get(m, 0) for m in self.models}

    def _lm_for(self, router_index: int) -> tuple[str, Any]:
        name = self.router.models_[router_index]
        position = self.models.index(name) if name in self.models else router_index
        return self.models[position], self.candidates[position]

    # ---- calls -------------------------------------------------------------------------------------------------
    def forward(self, **kwargs) -> dspy.Prediction:
        query = query_text(self.module, kwargs)
        if isinstance(self.router, CascadeRouter):
            return self._cascade(query, kwargs)
        name, lm = self._lm_for(int(self.router.route([query], self.threshold)[0]))
        with dspy.context(lm=lm):
            prediction = self.module(**kwargs)
        self.log.add(name, query)
        return prediction

    async def aforward(self, **kwargs) -> dspy.Prediction:
        """`await routed.acall(...)`: the decision runs in a worker thread (embedding may take milliseconds)."""
        import asyncio

        if isinstance(self.router, CascadeRouter):
            raise NotImplementedError("an async cascade is not supported yet; call it synchronously or in a thread "
                                      "(dspy.asyncify(program))")
        query = query_text(self.module, kwargs)
        index = await asyncio.to_thread(lambda: int(self.router.route([query], self.threshold)[0]))
        name, lm = self._lm_for(index)
        if callable(getattr(self.module, "aforward", None)):
            with dspy.context(lm=lm):
                prediction = await self.module.acall(**kwargs)
        else:  # a module with only `forward` runs in a worker thread (which inherits this context)

            def call() -> dspy.Prediction:
                with dspy.context(lm=lm):
                    return self.module(**kwargs)

            prediction = await asyncio.to_thread(call)
        self.log.add(name, query)
        return prediction

    def _confidence(self, lm: Any, kwargs: dict[str, Any], prediction: Any, entries: list[dict]) -> float:
        kind = self.router.confidence
        if kind == "logprob":
            return math.exp(mean_logprob(entries))  # NaN (never confident) when the LM reports no log-probabilities
        if kind == "verifier":
            return verifier_confidence(self.verifier, kwargs, prediction)
        outputs, main, same = list(prediction.keys()), answer_key(prediction, list(prediction.keys())), 0
        for s in range(self.router.samples):
            sample_lm = lm.copy(temperature=self.router.temperature, rollout_id=s + 1, seed=s + 1)
            sampled, _, _, _ = run_once(self.module, sample_lm, kwargs)
            same += sampled is not None and answer_key(sampled, outputs) == main
        return same / self.router.samples

    def _cascade(self, query: str, kwargs: dict[str, Any]) -> dspy.Prediction:
        order = sorted(range(len(self.router.models_)), key=lambda j: self.router.costs_[j])
        for step, j in enumerate(order):
            name, lm = self._lm_for(j)
            last = step == len(order) - 1
            call_lm = lm.copy(logprobs=True) if self.router.confidence == "logprob" else lm
            prediction, entries, error, _ = run_once(self.module, call_lm, kwargs)
            if prediction is None:
                if last:
                    raise RuntimeError(f"every model of the cascade failed; the last ({name}) said: {error}")
                continue
            if last or self._confidence(lm, kwargs, prediction, entries) >= self.threshold:
                self.log.add(name, query)
                return prediction
        raise AssertionError("unreachable: the last model always answers")

    def describe_route(self) -> dict[str, Any]:
        """What `cp.show` prints for this module: router, threshold, candidates and calls per model."""
        return {"router": type(self.router).__name__, "threshold": self.threshold, "models": self.models,
                "calls": self.calls, "last": self.log.recent[-1][0] if self.log.recent else None}
