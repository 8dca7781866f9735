"""compound.LM through DSPy's own modules, threads, async, streaming, copies and saved programs."""

import asyncio
import copy

import dspy
import pytest

import compound as cp
from compound.lm import HFEngine, engine_of
from compound.testing import CAPITALS


@pytest.fixture
def lm(capitals):
    model, tok = capitals
    return cp.LM(model, tokenizer=tok, name="capitals", cache=False, max_tokens=64)


def question(country):
    return f"What is the capital of {country}?"


def test_model_string_and_engine_protocol(lm):
    assert lm.model == "local/capitals"
    assert isinstance(lm._engine_spec, HFEngine)
    assert not hasattr(type(lm), "forward") or type(lm).forward is dspy.LM.forward  # no BaseLM.forward subclassing


def test_predict_and_chain_of_thought(lm):
    with dspy.context(lm=lm):
        assert dspy.Predict("question -> answer")(question=question("Japan")).answer == "Tokyo"
        pred = dspy.ChainOfThought("question -> answer")(question=question("Italy"))
    assert pred.answer == "Rome" and pred.reasoning
    entry = lm.history[-1]
    assert entry["usage"]["prompt_tokens"] > 100 and entry["usage"]["completion_tokens"] > 3
    data = entry["response"].provider_data
    assert set(data) >= {"queue_s", "latency_s", "device_s", "ttft_s", "prefix_hit_tokens"}
    assert 0 <= data["queue_s"] <= data["latency_s"] and data["device_s"] > 0


def test_evaluate_eight_threads_batches_on_one_engine(lm):
    dev = [dspy.Example(question=question(c), answer=a).with_inputs("question") for c, a in CAPITALS.items()] * 4
    before = engine_of(lm).stats()
    with dspy.context(lm=lm):
        result = dspy.Evaluate(devset=dev, metric=lambda ex, pred, trace=None: ex.answer == pred.answer,
                               num_threads=8, display_progress=False)(dspy.Predict("question -> answer"))
    assert result.score == 100.0
    after = engine_of(lm).stats()
    assert after.requests_finished - before.requests_finished == len(dev)
    assert after.mean_batch_size > 1.5  # 8 threads shared decode steps
    assert after.prefill_tokens_saved > before.prefill_tokens_saved  # the predictor's shared prompt was reused


def test_async_calls_share_the_engine(lm):
    program = dspy.Predict("question -> answer")

    async def main():
        with dspy.context(lm=lm):
            return await asyncio.gather(*(program.acall(question=question(c)) for c in CAPITALS))

    assert [p.answer for p in asyncio.run(main())] == list(CAPITALS.values())


def test_stream_through_dspy_engine(lm):
    from dspy.lm15 import Message, Request

    system, user = dspy.ChatAdapter().format(dspy.Predict("question -> answer").signature, demos=[],
                                             inputs={"question": question("Peru")})
    request = Request(model=lm.model, system=system["content"], messages=(Message.user(user["content"]),))
    events = list(lm._engine_spec.stream(request))
    assert events[0].type == "start" and events[-1].type == "end"
    text = "".join(e.delta.text for e in events if e.type == "delta")
    assert text == lm._engine_spec.complete(request).message.text
    assert "Lima" in text and events[-1].usage.output_tokens > 3


def test_copies_and_saved_programs_share_one_set_of_weights(lm, tmp_path):
    program = dspy.ChainOfThought("question -> answer")
    program.predict.lm = lm
    weights = engine_of(lm).model
    clone = program.deepcopy()
    assert engine_of(clone.predict.lm) is engine_of(lm) and engine_of(lm.copy(temperature=0.5)).model is weights
    assert copy.deepcopy(lm)._engine_spec is lm._engine_spec

    path = tmp_path / "program.json"
    program.save(path)
    fresh = dspy.ChainOfThought("question -> answer")
    fresh.load(path, allow_unsafe_lm_state=True)
    assert fresh.predict.lm.model == "local/capitals"
    assert engine_of(fresh.predict.lm).model is weights
    assert len({id(m.model) for m in cp.loaded_models() if m.name == "capitals"}) == 1  # one set of weights
    assert fresh(question=question("Spain")).answer == "Madrid"


def test_loaded_models_snapshot(lm):
    snap = next(m.snapshot() for m in cp.loaded_models() if m.name == "capitals")
    assert snap["params"] > 0 and snap["device"] == "cpu" and snap["dtype"] == "float32"
    assert {"requests_total", "queue_depth", "batch_size_hist", "tokens_per_s"} <= set(snap["stats"])


def test_unknown_adapter_is_refused_not_served_by_the_base(lm):
    tuned = lm.copy(model="local/capitals@never-trained")
    with pytest.raises(Exception, match="adapter 'never-trained' is not loaded"):
        tuned("What is the capital of Peru?")


def test_a_broken_model_fails_one_request_then_stops_and_the_next_call_gets_a_fresh_engine(lm):
    """A forward fault fails the request alone; a second request failing alone means the model is broken: the engine
    stops (its K/V freed), and the next call starts a fresh engine on the same weights."""
    broken = engine_of(lm)
    broken.faults.inject("prefill", error=lambda: RuntimeError("device-side assert (injected)"))
    predict = dspy.Predict("question -> answer")
    with dspy.context(lm=lm), pytest.raises(dspy.LMUnexpectedError, match="failed at prefill.*device-side assert"):
        predict(question=question("Peru"))
    assert broken.alive
    with dspy.context(lm=lm), pytest.raises(dspy.LMUnexpectedError, match="stopped: RuntimeError: device-side assert"):
        predict(question=question("Chile"))
    assert not broken.alive and broken.kv.nbytes == 0
    with dspy.context(lm=lm):
        assert predict(question=question("Peru")).answer == "Lima"
    assert engine_of(lm) is not broken and engine_of(lm).model is broken.model


def test_disk_cache_never_answers_from_other_weights(capitals, tmp_path):
    """Two different models under one name: DSPy's cache keys differ because the weights' fingerprint is in them."""
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=True)
    try:
        _check_cache_keys(capitals)
    finally:
        dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=True)


def _check_cache_keys(capitals):
    from compound.testing import tiny_llama

    model, tok = capitals
    trained = cp.LM(model, tokenizer=tok, name="same-name", cache=True, max_tokens=64)
    with dspy.context(lm=trained):
        assert dspy.Predict("question -> answer")(question=question("Peru")).answer == "Lima"
    random_model, _ = tiny_llama(9, tokenizer=tok)
    with pytest.warns(UserWarning, match="'same-name' now serves other weights"):  # a new entry, never stale output
        other = cp.LM(random_model, tokenizer=tok, name="same-name", cache=True, max_tokens=8)
    assert engine_of(other).model is random_model and engine_of(trained).model is model
    assert other.model == trained.model and other.kwargs["metadata"] != trained.kwargs["metadata"]
    before = engine_of(other).stats().requests_total
    other("What is the capital of Peru?")
    assert engine_of(other).stats().requests_total == before + 1  # computed, not served from the cache
