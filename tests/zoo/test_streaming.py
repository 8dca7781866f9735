"""dspy.streamify + StreamListener with CompactAdapter: each output field streams as with DSPy's own adapters."""

import asyncio

import dspy
import pytest

import compound as cp
from compound.testing import scripted_lm


def stream_fields(program, fields, adapter, **inputs):
    """Run `dspy.streamify` with one plain StreamListener per field; returns ({field: streamed text}, prediction)."""
    listeners = [dspy.streaming.StreamListener(signature_field_name=f) for f in fields]
    stream = dspy.streamify(program, stream_listeners=listeners)

    async def run():
        streamed, prediction = {f: "" for f in fields}, None
        async for item in stream(**inputs):
            if isinstance(item, dspy.streaming.StreamResponse):
                streamed[item.signature_field_name] += item.chunk
            elif isinstance(item, dspy.Prediction):
                prediction = item
        return streamed, prediction

    with dspy.context(adapter=adapter):
        return asyncio.run(run())


@pytest.mark.parametrize("chunk", [1, 2, 3, 4, 5, 6, 7, 11, 100])
def test_two_fields_stream_separately_whatever_the_chunking(chunk):
    predict = dspy.Predict("ticket -> category, order_id")
    predict.lm = scripted_lm(["category: billing and refunds\norder_id: 12345"], chunk=chunk)
    streamed, prediction = stream_fields(predict, ["category", "order_id"], cp.CompactAdapter(), ticket="x")
    assert prediction.category == "billing and refunds" and prediction.order_id == "12345"
    if chunk < 100:  # one chunk holding the whole answer is DSPy's cache-hit path: only the prediction comes
        assert streamed == {"category": "billing and refunds", "order_id": "12345"}


def test_a_continuation_line_stays_in_the_field():
    predict = dspy.Predict("question -> answer, confidence")
    predict.lm = scripted_lm(["answer: first line\nsecond line\nconfidence: high"], chunk=2)
    streamed, prediction = stream_fields(predict, ["answer"], cp.CompactAdapter(), question="q")
    assert streamed["answer"] == prediction.answer == "first line\nsecond line"


def test_the_same_listener_type_still_streams_chat_adapter_output():
    predict = dspy.Predict("question -> answer")
    predict.lm = scripted_lm(["[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]"], chunk=4)
    streamed, _ = stream_fields(predict, ["answer"], dspy.ChatAdapter(), question="q")
    assert streamed["answer"] == "Paris"


@pytest.mark.slow
def test_a_zoo_model_streams_its_answer():
    triage = cp.zoo.tasks["triage"]
    predict = dspy.Predict(triage.signature)
    predict.lm = cp.zoo.lm("tiny")
    streamed, prediction = stream_fields(predict, ["category"], cp.CompactAdapter(),
                                         ticket="I was charged twice for order 12345.")
    assert prediction.category == "billing"
    assert streamed["category"] == "billing"
