"""Hypothesis fuzz of request parameters, prompts and engine configs: ≥ 1,000 requests per run, submitted in
concurrent batches. Every request gets a result that keeps its promises, or a typed error; no engine ever dies."""

import math
from concurrent.futures import CancelledError

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compound.lm import (
    Engine,
    EngineConfig,
    InvalidRequestError,
    RequestAbortedError,
    RequestFailedError,
    SamplingParams,
)

TYPED = (InvalidRequestError, RequestFailedError, RequestAbortedError)
CONFIGS = [  # small contexts keep each request short; the limits are what the fuzz pushes against
    dict(max_batch_size=8, max_seq_len=40, max_prefill_tokens=16, prefix_block_size=8),
    dict(max_batch_size=3, max_seq_len=48, max_prefill_tokens=512, prefix_cache_tokens=0),
    dict(max_batch_size=16, max_seq_len=32, max_prefill_tokens=8, prefix_block_size=4, prefix_cache_tokens=16),
]
EXAMPLES = 320


@pytest.fixture(scope="module")
def engines(model_and_tokenizer):
    model, tok = model_and_tokenizer
    made = [Engine(model, tok, EngineConfig(**c)) for c in CONFIGS]
    yield made
    for engine in made:
        engine.close()


def prompts(vocab, limit):
    token = st.integers(0, vocab - 1)  # any id: byte-level pieces that are not valid UTF-8 on their own included
    fits = st.lists(token, min_size=1, max_size=limit - 1)
    return st.one_of(
        fits, fits, fits,
        st.lists(token, min_size=1, max_size=1),
        st.sampled_from([limit - 1, limit, limit + 1]).flatmap(lambda n: st.lists(token, min_size=n, max_size=n)),
        st.just([]),
        st.lists(st.sampled_from([-1, vocab, 10**9, 3]), min_size=1, max_size=4),  # ids outside the vocabulary
    )


STOPS = st.lists(st.one_of(st.text(max_size=3), st.sampled_from(["", " ", "e", "\n", "\ufffd", "the", "a" * 40,
                                                                   "\ud800", "[[ ## completed ## ]]"])), max_size=4)
BAD = st.sampled_from([  # one invalid field at a time, so refusals are about that field
    ("max_tokens", 0), ("max_tokens", -1), ("max_tokens", True), ("max_tokens", 2.5), ("temperature", float("nan")),
    ("temperature", float("inf")), ("temperature", -1.0), ("temperature", 2.5), ("temperature", True),
    ("top_p", 0.0), ("top_p", 1.5), ("top_p", float("nan")), ("top_k", -1), ("seed", -5), ("seed", 2**64),
    ("logprobs", -1), ("logprobs", 21), ("stop", (1,)),
])


def request(vocab, limit):
    return st.fixed_dictionaries({
        "prompt": prompts(vocab, limit),
        "max_tokens": st.one_of(st.integers(1, 6), st.integers(1, 10**9)),  # huge ones are clamped to the context
        "temperature": st.one_of(st.just(0.0), st.floats(0.0, 2.0)),
        "top_p": st.one_of(st.just(1.0), st.floats(0.01, 1.0)),
        "top_k": st.one_of(st.just(0), st.just(1), st.integers(0, 600)),
        "seed": st.one_of(st.none(), st.integers(0, 2**63 - 1)),
        "stop": STOPS,
        "logprobs": st.one_of(st.none(), st.integers(0, 20)),
        "stream": st.booleans(),
        "abort": st.integers(0, 9),  # 0: abort it right after submitting
        "bad": st.one_of(st.none(), st.none(), st.none(), BAD),
    })


def check_result(r, params: SamplingParams, streamed: str | None):
    assert r.finish_reason in {"stop", "length"}
    assert r.output_tokens == len(r.output_ids) <= params.max_tokens
    assert not any(s and s in r.text for s in params.stop), (r.text, params.stop)  # no stop string survives
    if streamed is not None:
        assert streamed == r.text
    if params.logprobs is not None:
        assert len(r.logprobs) <= r.output_tokens
        assert all(c.logprob <= 1e-6 and len(c.top) <= params.logprobs for c in r.logprobs)
        assert all(math.isfinite(c.logprob) for c in r.logprobs)


def test_fuzzed_requests_fail_alone_and_typed(engines, model_and_tokenizer, figures):
    model, tok = model_and_tokenizer
    vocab = engines[0].vocab_size
    tally = {"requests": 0, "answered": 0, "refused": 0, "failed": 0, "aborted": 0}

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.integers(0, len(engines) - 1).flatmap(
        lambda e: st.tuples(st.just(e), st.lists(request(vocab, CONFIGS[e]["max_seq_len"]), min_size=2, max_size=10))))
    def run(case):
        index, batch = case
        engine = engines[index]
        live = []
        for spec in batch:
            tally["requests"] += 1
            fields = {k: spec[k] for k in ("max_tokens", "temperature", "top_p", "top_k", "seed", "logprobs")}
            fields["stop"] = tuple(spec["stop"])
            if spec["bad"] is not None:
                fields[spec["bad"][0]] = spec["bad"][1]
            try:
                params = SamplingParams(**fields)
                seq = engine.submit(spec["prompt"], params, stream=spec["stream"])
            except InvalidRequestError:
                tally["refused"] += 1
                continue
            if spec["abort"] == 0:
                engine.abort(seq.id)
            live.append((seq, params))
        for seq, params in live:
            try:
                result = seq.future.result(30)
            except (RequestAbortedError, CancelledError):
                tally["aborted"] += 1
                continue
            except RequestFailedError:
                tally["failed"] += 1
                continue
            streamed = None
            if seq.stream is not None:
                parts = []
                while (delta := seq.stream.get(timeout=30)) is not None:
                    parts.append(delta)
                streamed = "".join(parts)
            check_result(result, params, streamed)
            tally["answered"] += 1
        assert all(e.alive for e in engines)

    run()
    deaths = sum(not e.alive for e in engines)
    figures.add(f"hypothesis fuzz: {tally['requests']} requests in {EXAMPLES} concurrent batches over "
                f"{len(engines)} engine configs: {tally['answered']} answered (promises checked), {tally['refused']} "
                f"refused with InvalidRequestError, {tally['aborted']} aborted, {tally['failed']} failed typed; "
                f"{deaths} engine deaths")
    assert tally["requests"] >= 1000 and deaths == 0
    assert tally["answered"] > 100 and tally["refused"] > 100  # both sides of the validation are exercised
