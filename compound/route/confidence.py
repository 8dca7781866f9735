"""Running a module once on one model, and the confidences a cascade defers on, measured the same way when collecting
routing data (`cp.route.collect`) and when routing a live call (`cp.Routed`), synchronously or under asyncio.

    "logprob"    exp(mean log-probability of the tokens that spell the answer's values): read from the answer's own
                 call, asked with DSPy's standard `logprobs=True`; it costs nothing beyond that one call
    "agreement"  the share of `samples` extra answers (at `temperature`) equal to the answer: `samples` more calls
    "verifier"   the score a verifier (a DSPy module or any callable) gives the answer: whatever LM calls it makes

Every LM call made while measuring is kept (`Measured.entries`, DSPy history entries), so a cascade's cost counts
what its confidence spent, a verifier's own model included (`spent(entries)`).

Example:
    >>> entries = [{"outputs": [{"text": "12", "logprobs": {"content": [{"token": "1", "logprob": -0.5},
    ...                                                                   {"token": "2", "logprob": -1.5}]}}]}]
    >>> mean_logprob(entries)
    -1.0
    >>> answer_key({"answer": "  Billing "}, ["answer"])
    ('billing',)
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import dspy

KINDS = ("logprob", "agreement", "verifier")
PAID = ("agreement", "verifier")  # the kinds that make LM calls of their own


class _Recorder:
    """Stands in the DSPy call stack so that every LM call made below it appends its history entry here."""

    def __init__(self):
        self.history: list[dict] = []


@contextlib.contextmanager
def recording() -> Iterator[list[dict]]:
    """The history entries of every LM call made in this block, by any LM, in this thread or task only.

    DSPy appends each call's entry to the history of every module on its call stack (`settings.caller_modules`);
    a recorder on that stack sees exactly the calls made inside the block, however many threads share the LMs.
    """
    recorder = _Recorder()
    with dspy.context(caller_modules=[*(dspy.settings.caller_modules or []), recorder], disable_history=False):
        yield recorder.history


def run_once(program: dspy.Module, lm: Any, inputs: dict[str, Any]) -> tuple[Any, list[dict], str, float]:
    """Run `program` on `lm`: (prediction or None, the call's history entries, error text, seconds)."""
    start = time.perf_counter()
    prediction, error = None, ""
    with dspy.context(lm=lm), recording() as entries:
        try:
            prediction = program(**inputs)
        except Exception as exc:  # a model's bad output is data for the router, not a crash
            error = f"{type(exc).__name__}: {exc}"[:500]
    return prediction, entries, error, time.perf_counter() - start


async def arun_once(program: dspy.Module, lm: Any, inputs: dict[str, Any]) -> tuple[Any, list[dict], str, float]:
    """`run_once` under asyncio: the module's `aforward` (DSPy's async path), or its `forward` in a worker thread."""
    start = time.perf_counter()
    prediction, error = None, ""
    with dspy.context(lm=lm), recording() as entries:
        try:
            if has_aforward(program):
                prediction = await program.acall(**inputs)
            else:  # the worker thread runs in a copy of this context: same LM, same recorder
                prediction = await asyncio.to_thread(lambda: program(**inputs))
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
    return prediction, entries, error, time.perf_counter() - start


def has_aforward(module: Any) -> bool:
    """Whether `module.acall` works: a DSPy module that defines `aforward` (dspy.Predict and friends do)."""
    return isinstance(module, dspy.Module) and callable(getattr(module, "aforward", None))


def answer_lm(lm: Any, kind: str | None) -> Any:
    """The LM to ask for the answer: with token log-probabilities when the confidence reads them."""
    return lm.copy(logprobs=True) if kind == "logprob" else lm


def sample_lm(lm: Any, s: int, temperature: float) -> Any:
    """The LM for the s-th agreement sample (0-based): its own seed and rollout, so samples differ and repeat."""
    return lm.copy(temperature=temperature, rollout_id=s + 1, seed=s + 1)


# ---- reading confidences ------------------------------------------------------------------------------------
def mean_logprob(entries: list[dict], values: dict[str, Any] | None = None) -> float:
    """Mean token log-probability of the last answer in these history entries (NaN when the LM reported none).

    The entries' outputs carry DSPy's standard `logprobs` (OpenAI format: `{"content": [{"token", "logprob"}]}`),
    which cover the whole completion, the adapter's format included (`order_id: `, `[[ ## answer ## ]]`): tokens the
    model is always sure of, which would pull every answer toward confidence 1, the more the shorter the answer.
    With `values` (the prediction's output fields) only the tokens that spell those values count.

    Example:
        >>> content = [{"token": t, "logprob": lp} for t, lp in [("total", 0.0), (":", 0.0), (" ", 0.0),
        ...                                                      ("4", -1.0), ("2", -2.0)]]
        >>> entries = [{"outputs": [{"text": "total: 42", "logprobs": {"content": content}}]}]
        >>> mean_logprob(entries), mean_logprob(entries, {"total": "42"})
        (-0.6, -1.5)
    """
    for entry in reversed(entries):
        for output in entry.get("outputs") or []:
            content = ((output.get("logprobs") or {}).get("content") if isinstance(output, dict) else None) or []
            tokens = [t for t in content if t.get("logprob") is not None]
            if tokens:
                chosen = _value_tokens(tokens, values) if values else tokens
                return float(sum(t["logprob"] for t in chosen) / len(chosen))
    return math.nan


def _value_tokens(tokens: list[dict], values: dict[str, Any]) -> list[dict]:
    """The tokens whose text overlaps one of the field values (searched after the field's name when it appears);
    all tokens when no value is found in the text."""
    starts, text = [], ""
    for t in tokens:
        starts.append(len(text))
        text += str(t.get("token", ""))
    spans = []
    for name, value in values.items():
        value = str(value).strip()
        if not value:
            continue
        label = text.find(str(name))
        at = text.find(value, label + len(str(name)) if label >= 0 else 0)
        if at < 0:
            at = text.find(value)
        if at >= 0:
            spans.append((at, at + len(value)))
    chosen = [t for t, start in zip(tokens, starts)
              if any(start < end and start + len(str(t.get("token", ""))) > begin for begin, end in spans)]
    return chosen or tokens


def answer_key(prediction: Any, outputs: Sequence[str]) -> tuple[str, ...]:
    """The prediction's output fields, normalized (case, spacing), for comparing samples."""
    return tuple(" ".join(str(prediction.get(name, "")).lower().split()) for name in outputs)


def _as_score(value: Any) -> float:
    if isinstance(value, dspy.Prediction):
        value = next(iter(value.values()), None)
    if isinstance(value, str):
        text = value.strip().lower()
        value = {"yes": 1.0, "true": 1.0, "correct": 1.0, "no": 0.0, "false": 0.0, "incorrect": 0.0}.get(text, text)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"the verifier returned {value!r}; it must return a number in [0, 1] or yes/no") from None


def verifier_confidence(verifier: Any, inputs: dict[str, Any], prediction: Any) -> float:
    """Run a verifier: a callable `(inputs, prediction) -> float`, or a DSPy module whose first output is the score."""
    if isinstance(verifier, dspy.Module):
        return _as_score(verifier(**inputs, **dict(prediction.items())))
    return _as_score(verifier(inputs, prediction))


async def averifier_confidence(verifier: Any, inputs: dict[str, Any], prediction: Any) -> float:
    """`verifier_confidence` under asyncio: a module's `acall`, an async callable awaited, any other in a thread."""
    if has_aforward(verifier):
        return _as_score(await verifier.acall(**inputs, **dict(prediction.items())))
    if inspect.iscoroutinefunction(verifier) or inspect.iscoroutinefunction(getattr(verifier, "__call__", None)):
        return _as_score(await verifier(inputs, prediction))
    return await asyncio.to_thread(verifier_confidence, verifier, inputs, prediction)


# ---- measuring ----------------------------------------------------------------------------------------------
@dataclass
class Measured:
    """One confidence and the LM calls that measuring it made (none for "logprob")."""

    value: float
    entries: list[dict] = field(default_factory=list)


def measure(kind: str, program, lm, inputs: dict[str, Any], prediction, entries: list[dict], *, verifier=None,
            samples: int = 5, temperature: float = 0.7) -> Measured:
    """The `kind` confidence of `prediction` (which `program` gave on `lm`; `entries` are that call's history)."""
    if kind == "logprob":
        return Measured(math.exp(mean_logprob(entries, dict(prediction.items()))))
    if kind == "verifier":
        with recording() as spent:
            value = verifier_confidence(verifier, inputs, prediction)
        return Measured(value, spent)
    runs = [run_once(program, sample_lm(lm, s, temperature), inputs) for s in range(samples)]
    return _agreement(prediction, runs)


async def ameasure(kind: str, program, lm, inputs: dict[str, Any], prediction, entries: list[dict], *,
                   verifier=None, samples: int = 5, temperature: float = 0.7) -> Measured:
    """`measure` under asyncio; the agreement samples run concurrently (the engine batches them)."""
    if kind == "logprob":
        return Measured(math.exp(mean_logprob(entries, dict(prediction.items()))))
    if kind == "verifier":
        with recording() as spent:
            value = await averifier_confidence(verifier, inputs, prediction)
        return Measured(value, spent)
    runs = await asyncio.gather(*(arun_once(program, sample_lm(lm, s, temperature), inputs) for s in range(samples)))
    return _agreement(prediction, runs)


def _agreement(prediction, runs) -> Measured:
    outputs = list(prediction.keys())
    main = answer_key(prediction, outputs)
    same = sum(sampled is not None and answer_key(sampled, outputs) == main for sampled, _, _, _ in runs)
    return Measured(same / len(runs), [e for _, sample_entries, _, _ in runs for e in sample_entries])


# ---- what calls cost ----------------------------------------------------------------------------------------
def params_of_model(model: str) -> float:
    """Parameter count of the compound model a history entry names (`local/<name>[@adapter]`); NaN for others."""
    from compound.lm.loading import find_loaded

    name = str(model).removeprefix("local/").partition("@")[0]
    loaded = find_loaded(name) if str(model).startswith("local/") else None
    return float(loaded.params) if loaded is not None else math.nan


def spent(entries: list[dict]) -> dict[str, float]:
    """What these LM calls cost: calls, tokens, device-seconds, USD and FLOPs (NaN where a call does not say)."""
    device = [(e.get("response") and getattr(e["response"], "provider_data", None) or {}).get("device_s")
              for e in entries]
    usd = [e.get("cost") for e in entries]
    tokens = [int((e.get("usage") or {}).get("prompt_tokens") or 0) + int((e.get("usage") or {}).get(
        "completion_tokens") or 0) for e in entries]
    return {
        "calls": len(entries),
        "input_tokens": sum(int((e.get("usage") or {}).get("prompt_tokens") or 0) for e in entries),
        "output_tokens": sum(int((e.get("usage") or {}).get("completion_tokens") or 0) for e in entries),
        "device_s": math.fsum(device) if all(d is not None for d in device) else math.nan,
        "usd": math.fsum(usd) if all(u is not None for u in usd) else math.nan,
        "flops": math.fsum(2.0 * params_of_model(e.get("model", "")) * t for e, t in zip(entries, tokens)),
    }
