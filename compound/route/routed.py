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
    >>> tiny, small = cp.zoo.lm("tiny"), cp.zoo.lm("small")
    >>> router = cp.route.KNNRouter(k=1, encoder="hashing").fit(      # tiny fails on order numbers, small does not
    ...     ["ticket: a refund for order 12345", "ticket: the app crashes"], [[0.0, 1.0], [1.0, 1.0]],
    ...     costs=[1, 2], models=["zoo-tiny", "zoo-small"])
    >>> routed = cp.Routed(dspy.Predict(cp.zoo.tasks["extract"].signature), router, [tiny, small], threshold=0.1)
    >>> with dspy.context(adapter=cp.CompactAdapter()):
    ...     prediction = routed(ticket="Where is my order 34567? It is late.")
    >>> routed.history[-1]["model"], routed.calls
    ('local/zoo-small', {'zoo-tiny': 0, 'zoo-small': 1})
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter, deque
from typing import Any

import dspy
from dspy.predict.parameter import Parameter

from compound.route.base import Router, from_state
from compound.route.cascade import CascadeRouter
from compound.route.collector import candidate_names, query_text
from compound.route.confidence import ameasure, answer_lm, arun_once, has_aforward, measure, run_once


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

    Example (a cascade under asyncio: tiny answers first, small only when tiny's answer is unsure):
        >>> import asyncio, dspy, numpy as np, compound as cp
        >>> from compound.zoo.helpdesk import HelpDesk, requests
        >>> cascade = cp.route.CascadeRouter(confidence="logprob").fit(
        ...     np.ones((2, 2)), np.ones((2, 2)), costs=[1, 2], models=["zoo-tiny", "zoo-small"])
        >>> desk = cp.Routed(HelpDesk(), cascade, [cp.zoo.lm("tiny"), cp.zoo.lm("small")], threshold=0.9)
        >>> async def answer(examples):
        ...     return await asyncio.gather(*(desk.acall(**ex.inputs()) for ex in examples))
        >>> with dspy.context(adapter=cp.CompactAdapter()):
        ...     predictions = asyncio.run(answer(requests("dev", per_kind=2)))
        >>> len(predictions), sum(desk.calls.values())     # every request answered once, by one of the two
        (8, 8)
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
        """`await routed.acall(...)`: the module's own `aforward` on the chosen model (DSPy's async path), or its
        `forward` in a worker thread; a learned router decides in a worker thread (embedding may take milliseconds)."""
        query = query_text(self.module, kwargs)
        if isinstance(self.router, CascadeRouter):
            return await self._acascade(query, kwargs)
        index = await asyncio.to_thread(lambda: int(self.router.route([query], self.threshold)[0]))
        name, lm = self._lm_for(index)
        if has_aforward(self.module):
            with dspy.context(lm=lm):
                prediction = await self.module.acall(**kwargs)
        else:  # the worker thread runs in a copy of this context, chosen LM included
            with dspy.context(lm=lm):
                prediction = await asyncio.to_thread(lambda: self.module(**kwargs))
        self.log.add(name, query)
        return prediction

    def _steps(self) -> list[tuple[str, Any, bool]]:
        """The cascade's models, cheapest first: (name, lm, whether it is the last, which always answers)."""
        order = sorted(range(len(self.router.models_)), key=lambda j: self.router.costs_[j])
        return [(*self._lm_for(j), step == len(order) - 1) for step, j in enumerate(order)]

    def _confidence_settings(self) -> dict[str, Any]:
        return {"verifier": self.verifier, "samples": self.router.samples, "temperature": self.router.temperature}

    def _cascade(self, query: str, kwargs: dict[str, Any]) -> dspy.Prediction:
        kind = self.router.confidence
        for name, lm, last in self._steps():
            prediction, entries, error, _ = run_once(self.module, answer_lm(lm, kind), kwargs)
            if self._keeps(name, last, prediction, error) and (last or measure(
                    kind, self.module, lm, kwargs, prediction, entries, **self._confidence_settings()).value
                    >= self.threshold):
                self.log.add(name, query)
                return prediction
        raise AssertionError("unreachable: the last model always answers")

    async def _acascade(self, query: str, kwargs: dict[str, Any]) -> dspy.Prediction:
        kind = self.router.confidence
        for name, lm, last in self._steps():
            prediction, entries, error, _ = await arun_once(self.module, answer_lm(lm, kind), kwargs)
            if self._keeps(name, last, prediction, error) and (last or (await ameasure(
                    kind, self.module, lm, kwargs, prediction, entries, **self._confidence_settings())).value
                    >= self.threshold):
                self.log.add(name, query)
                return prediction
        raise AssertionError("unreachable: the last model always answers")

    @staticmethod
    def _keeps(name: str, last: bool, prediction: Any, error: str) -> bool:
        """Whether a cascade step produced an answer to judge; a failed last step has nothing to fall back on."""
        if prediction is None and last:
            raise RuntimeError(f"every model of the cascade failed; the last ({name}) said: {error}")
        return prediction is not None

    def describe_route(self) -> dict[str, Any]:
        """What `cp.show` prints for this module: router, threshold, candidates and calls per model."""
        return {"router": type(self.router).__name__, "threshold": self.threshold, "models": self.models,
                "calls": self.calls, "last": self.log.recent[-1][0] if self.log.recent else None,
                "routes": "module"}  # the routed predictors: those of `self.module` (not a verifier's)
