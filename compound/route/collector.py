"""`cp.route.collect`: run every candidate model on every example, concurrently, and keep what routers learn from.

(The module is `collector`, so that `cp.route.collect` stays the function.)

Each (example, model) call runs the program on that candidate under a recorder (`compound.route.confidence`), so
tokens, device-seconds and prices come from exactly that call's DSPy history entries, however many threads share the
engines; so do the costs of a confidence (agreement samples, a verifier's own LM calls). Results are cached on disk,
keyed by the program's signatures and instructions, the models' weights fingerprints, the examples, the metric and
the confidence settings: refitting a router never re-runs the models.

Example:
    >>> import dspy, compound as cp
    >>> from compound.zoo.helpdesk import HelpDesk, metric, requests
    >>> with dspy.context(adapter=cp.CompactAdapter()):   # the prompt format the zoo models read
    ...     data = cp.route.collect(HelpDesk(), [cp.zoo.lm("tiny"), cp.zoo.lm("small")], requests("dev", per_kind=2),
    ...                             metric, cost="compute")
    >>> data.scores.shape, data.models
    ((8, 2), ['zoo-tiny', 'zoo-small'])
    >>> data.queries[1]
    'kind: order number\\ntext: Please help, #97274: my delivery is missing an item. Since 62 days.'
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dspy
import pandas as pd

from compound.route.confidence import PAID, answer_lm, measure, run_once, spent
from compound.route.data import RoutingData, state_dict, write_json

CACHE_VERSION = 3  # 3: confidence costs per kind (a verifier's own LM calls included); logprob over the values


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
def usage_of(entries: list[dict]) -> dict[str, float]:
    """Tokens, device-seconds and USD summed over a call's history entries (NaN where the LM does not report it)."""
    cost = spent(entries)
    return {
        "truncated": any(getattr(e.get("response"), "finish_reason", None) == "length" for e in entries),
        "input_tokens": cost["input_tokens"], "output_tokens": cost["output_tokens"],
        "device_s": cost["device_s"] if entries else math.nan, "usd": cost["usd"] if entries else math.nan,
    }


def _measure(program, lm, example, metric, kinds, verifier, samples, temperature) -> dict[str, Any]:
    inputs = example.inputs().toDict()
    prediction, entries, error, seconds = run_once(program, answer_lm(lm, "logprob" if "logprob" in kinds else None),
                                                   inputs)
    row = {"answer": "", "error": error, "latency_s": seconds, **usage_of(entries), "score": 0.0}
    if prediction is None:
        return row
    row["answer"] = json.dumps(dict(prediction.items()), default=str)
    row["score"] = float(metric(example, prediction))
    for kind in kinds:
        measured = measure(kind, program, lm, inputs, prediction, entries, verifier=verifier, samples=samples,
                           temperature=temperature)
        row[f"conf_{kind}"] = measured.value
        if kind in PAID:  # what this confidence cost on top of the answer (samples; the verifier's own LM calls)
            row.update({f"conf_{kind}_{unit}": value for unit, value in spent(measured.entries).items()
                        if unit in ("calls", "device_s", "usd", "flops")})
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
        >>> with dspy.context(adapter=cp.CompactAdapter()):
        ...     data = cp.route.collect(dspy.Predict(task.signature), [cp.zoo.lm("tiny"), cp.zoo.lm("small")],
        ...                             task.dev[:4], task.metric, confidence="logprob")
        >>> confident = data.confidence("logprob")      # exp(mean token log-probability) of each model's answer
        >>> confident.shape, bool(((confident > 0) & (confident <= 1)).all())
        ((4, 2), True)
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
