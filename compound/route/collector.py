"""`cp.route.collect`: run every candidate model on every example, concurrently, and keep what routers learn from.

(The module is `collector`, so that `cp.route.collect` stays the function.)

Each (example, model) call runs the program on a copy of the candidate LM (copies share the engine, and each keeps
its own history), so tokens, device-seconds and prices come from exactly that call's DSPy history entries, however
many threads share the engines. Results are cached on disk, keyed by the program's signatures and instructions, the
models' weights fingerprints, the examples, the metric and the confidence settings: refitting a router never
re-runs the models.

Example:
    >>> import compound as cp
    >>> data = cp.route.collect(program, [tiny, small], trainset, metric=task.metric)   # doctest: +SKIP
    >>> data.scores.shape                                                             # doctest: +SKIP
    (300, 2)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dspy
import pandas as pd

from compound.route.data import RoutingData, state_dict, write_json

CACHE_VERSION = 1


def candidate_names(candidates) -> tuple[list[str], list[Any]]:
    """Names and LMs of `candidates`: a `{name: lm}` dict, or a list named by model string (`local/` dropped).

    Example:
        >>> import dspy
        >>> candidate_names([dspy.LM("local/zoo-tiny"), dspy.LM("openai/gpt-4o-mini")])[0]
        ['zoo-tiny', 'openai/gpt-4o-mini']
    """
    if isinstance(candidates, dict):
        names, lms = [str(n) for n in candidates], list(candidates.values())
    else:
        lms = list(candidates)
        names = [str(getattr(lm, "model", lm)).removeprefix("local/") for lm in lms]
    if not lms:
        raise ValueError("`candidates` is empty; pass the models to route between, e.g. [tiny, small]")
    if len(set(names)) != len(names):
        raise ValueError(f"candidate names must differ, got {names}; pass a dict {{name: lm}} to name them")
    for name, lm in zip(names, lms):
        if not isinstance(lm, dspy.BaseLM):
            raise TypeError(f"candidate {name!r} is a {type(lm).__name__}, not a dspy.LM")
    return names, lms


def query_text(program: Any, inputs: dict[str, Any]) -> str:
    """The text a router sees for one call: `name: value` lines, in the signature's order for a Predict.

    Example:
        >>> import dspy
        >>> query_text(dspy.Predict("ticket, kind -> answer"), {"kind": "id", "ticket": "late"})
        'ticket: late\\nkind: id'
    """
    order = list(program.signature.input_fields) if isinstance(program, dspy.Predict) else sorted(inputs)
    order += [k for k in inputs if k not in order]
    return "\n".join(f"{name}: {inputs[name]}" for name in order if name in inputs)


def unrouted(program: dspy.Module) -> dspy.Module:
    """A copy of `program` (the module inside a `Routed`) whose predictors use whatever LM the context sets."""
    from compound.route.routed import Routed

    inner = program.module if isinstance(program, Routed) else program
    copy = inner.deepcopy()
    for _, predictor in copy.named_predictors():
        predictor.lm = None
    return copy


def weights_id(lm: Any) -> dict[str, Any]:
    """What identifies an LM's answers: model string, weights fingerprint (compound engines) and sampling kwargs."""
    kwargs = {k: v for k, v in (getattr(lm, "kwargs", None) or {}).items() if not k.startswith("api_")}
    return {"model": str(getattr(lm, "model", lm)), "kwargs": json.loads(json.dumps(kwargs, default=str))}


def params_of(lm: Any) -> float:
    """The parameter count of a compound-served LM (NaN for any other LM)."""
    from compound.lm.dspy_lm import HFEngine

    spec = getattr(lm, "_engine_spec", None)
    return float(spec.loaded.params) if isinstance(spec, HFEngine) else math.nan


# ---- confidences ---------------------------------------------------------------------------------------------
def mean_logprob(entries: list[dict]) -> float:
    """Mean token log-probability of the last answer in these history entries (NaN when the LM reported none)."""
    for entry in reversed(entries):
        for output in entry.get("outputs") or []:
            content = ((output.get("logprobs") or {}).get("content") if isinstance(output, dict) else None) or []
            values = [t["logprob"] for t in content if t.get("logprob") is not None]
            if values:
                return float(sum(values) / len(values))
    return math.nan


def answer_key(prediction: Any, outputs: Sequence[str]) -> tuple[str, ...]:
    """The prediction's output fields, normalized (case, spacing), for comparing samples."""
    return tuple(" ".join(str(prediction.get(name, "")).lower().split()) for name in outputs)


def verifier_confidence(verifier: Any, inputs: dict[str, Any], prediction: Any) -> float:
    """Run a verifier: a callable `(inputs, prediction) -> float`, or a DSPy module whose first output is the score."""
    if isinstance(verifier, dspy.Module):
        result = verifier(**inputs, **dict(prediction.items()))
        value = next(iter(result.values())) if hasattr(result, "values") else result
    else:
        value = verifier(inputs, prediction)
    if isinstance(value, str):
        text = value.strip().lower()
        value = {"yes": 1.0, "true": 1.0, "correct": 1.0, "no": 0.0, "false": 0.0, "incorrect": 0.0}.get(text, text)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"the verifier returned {value!r}; it must return a number in [0, 1] or yes/no") from None


def _confidence_spec(confidence) -> tuple[list[str], Any]:
    if confidence is None:
        return [], None
    items = confidence if isinstance(confidence, (list, tuple)) else [confidence]
    kinds, verifier = [], None
    for item in items:
        if isinstance(item, str):
            if item not in ("logprob", "agreement"):
                raise ValueError(f"`confidence` strings are 'logprob' and 'agreement', got {item!r}; "
                                 "pass a verifier as a callable or a DSPy module")
            kinds.append(item)
        elif callable(item):
            kinds.append("verifier")
            verifier = item
        else:
            raise TypeError(f"`confidence` items are 'logprob', 'agreement' or a verifier, got {type(item).__name__}")
    return kinds, verifier


# ---- one call ------------------------------------------------------------------------------------------------
def run_once(program: dspy.Module, lm: Any, inputs: dict[str, Any]) -> tuple[Any, list[dict], str, float]:
    """Run `program` on `lm` (a private copy: its history is this call's alone); (prediction, entries, error, seconds)."""
    call_lm = lm.copy()
    start = time.perf_counter()
    prediction, error = None, ""
    with dspy.context(lm=call_lm, disable_history=False):
        try:
            prediction = program(**inputs)
        except Exception as exc:  # a model's bad output is data for the router, not a crash
            error = f"{type(exc).__name__}: {exc}"[:500]
    return prediction, list(call_lm.history), error, time.perf_counter() - start


def usage_of(entries: list[dict]) -> dict[str, float]:
    """Tokens, device-seconds and USD summed over a call's history entries (NaN where the LM does not report it)."""
    device = [(e.get("response") and getattr(e["response"], "provider_data", None) or {}).get("device_s")
              for e in entries]
    usd = [e.get("cost") for e in entries]
    return {
        "truncated": any(getattr(e.get("response"), "finish_reason", None) == "length" for e in entries),
        "input_tokens": sum(int((e.get("usage") or {}).get("prompt_tokens") or 0) for e in entries),
        "output_tokens": sum(int((e.get("usage") or {}).get("completion_tokens") or 0) for e in entries),
        "device_s": sum(device) if entries and all(d is not None for d in device) else math.nan,
        "usd": sum(usd) if entries and all(u is not None for u in usd) else math.nan,
    }


def _measure(program, lm, example, metric, kinds, verifier, samples, temperature) -> dict[str, Any]:
    inputs = example.inputs().toDict()
    base_lm = lm.copy(logprobs=True) if "logprob" in kinds else lm
    prediction, entries, error, seconds = run_once(program, base_lm, inputs)
    row = {"answer": "", "error": error, "latency_s": seconds, **usage_of(entries), "score": 0.0}
    if prediction is None:
        return row
    row["answer"] = json.dumps(dict(prediction.items()), default=str)
    row["score"] = float(metric(example, prediction))
    if "logprob" in kinds:
        row["conf_logprob"] = math.exp(mean_logprob(entries))  # a probability: exp(mean token log-prob)
    if "agreement" in kinds:
        outputs = list(prediction.keys())
        main, same, spent_s, spent_usd = answer_key(prediction, outputs), 0, 0.0, 0.0
        for s in range(samples):
            sample_lm = lm.copy(temperature=temperature, rollout_id=s + 1, seed=s + 1)
            sampled, sample_entries, _, _ = run_once(program, sample_lm, inputs)
            same += sampled is not None and answer_key(sampled, outputs) == main
            usage = usage_of(sample_entries)
            spent_s += 0.0 if math.isnan(usage["device_s"]) else usage["device_s"]
            spent_usd += 0.0 if math.isnan(usage["usd"]) else usage["usd"]
        row.update(conf_agreement=same / samples, conf_cost_s=spent_s, conf_usd=spent_usd)
    if "verifier" in kinds:
        row["conf_verifier"] = verifier_confidence(verifier, inputs, prediction)
    return row


# ---- the cache -----------------------------------------------------------------------------------------------
def _program_id(program: dspy.Module) -> list:
    return [[name, str(p.signature), p.signature.instructions, [dict(d) for d in p.demos or []]]
            for name, p in program.named_predictors()]


def cache_key(program, names, lms, examples, metric, kinds, verifier, samples, temperature) -> str:
    """sha256 over everything that changes the collected results."""
    adapter = dspy.settings.adapter
    payload = {
        "version": CACHE_VERSION,
        "program": _program_id(program),
        "adapter": type(adapter).__qualname__ if adapter is not None else "ChatAdapter",
        "models": [[name, weights_id(lm)] for name, lm in zip(names, lms)],
        "examples": [[ex.toDict(), sorted(ex.inputs().keys())] for ex in examples],
        # the metric by name: edit a metric's code under the same name and pass cache=False (or clear the cache)
        "metric": f"{getattr(metric, '__module__', '')}.{getattr(metric, '__qualname__', type(metric).__qualname__)}",
        "confidence": [kinds, getattr(verifier, "__qualname__", type(verifier).__qualname__) if verifier else None,
                       samples if "agreement" in kinds else None, temperature if "agreement" in kinds else None],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def default_cache_dir() -> Path:
    """`$COMPOUND_CACHE/route` (else `~/.cache/compound/route`), next to the zoo."""
    from compound.zoo.cache import cache_root

    return cache_root().parent / "route"


@contextlib.contextmanager
def _quiet_truncation():
    """Drop DSPy's "LM response was truncated" warnings (one per call) while collecting."""
    logger = logging.getLogger("dspy.clients.lm")
    quiet = _DropTruncation()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


class _DropTruncation(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "truncated" not in record.getMessage()


# ---- the verb ------------------------------------------------------------------------------------------------
def collect(
    program: dspy.Module,
    candidates,
    examples: Sequence[dspy.Example],
    metric: Callable[..., float],
    *,
    num_threads: int = 16,
    confidence=None,
    samples: int = 5,
    temperature: float = 0.7,
    cost: str | dict[str, float] = "auto",
    cache: bool = True,
    cache_dir: str | Path | None = None,
    progress: Any = None,
) -> RoutingData:
    """Run every candidate on every example (concurrently through the engines) and record what routers learn from.

    Args:
        program: a predictor or any DSPy module (a `Routed` one: the module inside); predictors' own LMs are ignored.
        candidates: the models, a list of `dspy.LM` (cheapest first reads best) or a `{name: lm}` dict.
        examples: `dspy.Example`s with inputs marked; `metric(example, prediction)` scores each answer.
        confidence: what a cascade may defer on: "logprob", "agreement" (`samples` extra answers at `temperature`),
            a verifier (callable `(inputs, prediction) -> float` or a DSPy module), or a list of these.
        cost: "auto", "device", "compute", "usd" or `{name: cost per call}` (see `RoutingData`).
        cache: reuse results saved under `cache_dir` (default `~/.cache/compound/route`).
        progress: a `compound.observe.Progress` to advance as calls finish.

    Example:
        >>> import dspy, compound as cp
        >>> task = cp.zoo.tasks["extract"]
        >>> data = cp.route.collect(dspy.Predict(task.signature), [cp.zoo.lm("tiny"), cp.zoo.lm("small")],
        ...                         task.dev[:40], task.metric)   # doctest: +SKIP
    """
    from dspy.utils.parallelizer import ParallelExecutor

    if not isinstance(program, dspy.Module):
        raise TypeError(f"`program` must be a DSPy module or predictor, got {type(program).__name__}")
    names, lms = candidate_names(candidates)
    examples = list(examples)
    if not examples:
        raise ValueError("`examples` is empty; pass the dspy.Examples to run every candidate on")
    if not all(isinstance(ex, dspy.Example) and ex._input_keys for ex in examples):
        raise ValueError("`examples` must be dspy.Examples with inputs marked: example.with_inputs('question', ...)")
    kinds, verifier = _confidence_spec(confidence)
    if "agreement" in kinds and samples < 1:
        raise ValueError(f"`samples` must be at least 1 for agreement confidence, got {samples}")
    program = unrouted(program)
    key = cache_key(program, names, lms, examples, metric, kinds, verifier, samples, temperature)
    path = Path(cache_dir or default_cache_dir()) / f"{key}.json"
    if cache and path.is_file():
        try:
            return RoutingData.load(path, cost=cost)
        except (ValueError, KeyError, json.JSONDecodeError):
            pass  # unreadable or from another version: collect again and overwrite

    queries = [query_text(program, ex.inputs().toDict()) for ex in examples]
    jobs = [(i, j) for i in range(len(examples)) for j in range(len(lms))]  # example-major: every engine stays busy
    lock = threading.Lock()
    if progress is not None:
        progress.update(total=len(jobs), value=0)

    def run(job: tuple[int, int]) -> dict[str, Any]:
        i, j = job
        try:
            row = _measure(program, lms[j], examples[i], metric, kinds, verifier, samples, temperature)
        except Exception as exc:  # the metric or verifier failed: the caller's bug, raised after the pool
            row = {"_raise": exc}
        if progress is not None:
            with lock:
                progress.advance()
        return row

    executor = ParallelExecutor(num_threads=num_threads, disable_progress_bar=True, max_errors=len(jobs) + 1)
    with _quiet_truncation():  # recorded per call in the `truncated` column instead
        rows = executor.execute(run, jobs)
    for row in rows:
        if row is not None and "_raise" in row:
            raise row["_raise"]
    params = [params_of(lm) for lm in lms]
    records = [{"example": i, "model": names[j], "query": queries[i], "params": params[j], **row}
               for (i, j), row in zip(jobs, rows)]
    meta = {"models": {name: weights_id(lm)["model"] for name, lm in zip(names, lms)},
            "program": _program_id(program)[:8], "confidence": kinds, "samples": samples, "cache_key": key}
    frame = pd.DataFrame(records)
    if cache:  # saved before costing: a cost this data cannot give must not lose the runs
        write_json(path, state_dict(frame, names, "auto", meta))
    if progress is not None:
        progress.finish()
    return RoutingData(frame, names, cost=cost, meta=meta)
