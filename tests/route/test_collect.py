"""cp.route.collect runs every candidate on every example through the engines and records what routers learn from."""

from __future__ import annotations

import math

import dspy
import numpy as np
import pytest

import compound as cp
from compound.lm import engine_of
from compound.route.collector import usage_of
from compound.zoo.helpdesk import requests, metric


def _requests_finished(*lms) -> int:
    return sum(engine_of(lm).stats().requests_finished for lm in lms)


def test_collect_records_scores_tokens_costs_and_queries(desk, tiny, small, tmp_path):
    examples = requests("dev", per_kind=3)
    data = cp.route.collect(desk, [tiny, small], examples, metric, cache_dir=tmp_path, num_threads=8)
    assert data.models == ["zoo-tiny", "zoo-small"] and data.scores.shape == (12, 2)
    assert data.queries[1] == f"kind: order number\ntext: {examples[1].text}"
    # the scores are the metric of what each model answers when it runs the module alone
    for j, lm in enumerate([tiny, small]):
        with dspy.context(lm=lm):
            direct = [metric(ex, desk(**ex.inputs())) for ex in examples]
        assert data.scores[:, j].tolist() == direct
    frame = data.frame
    assert (frame["input_tokens"] > 0).all() and (frame["output_tokens"] > 0).all() and (frame["device_s"] > 0).all()
    assert data.cost == "device" and data.costs.shape == (2,) and (data.costs > 0).all()
    compute = data.with_cost("compute")
    params = {m: frame.loc[frame.model == m, "params"].iloc[0] for m in data.models}
    assert params["zoo-small"] > params["zoo-tiny"] > 0
    row = frame.iloc[0]
    assert compute.cost_matrix[0, 0] == 2 * params[row.model] * (row.input_tokens + row.output_tokens)
    mine = data.with_cost({"zoo-tiny": 1, "zoo-small": 5})
    assert mine.costs.tolist() == [1.0, 5.0] and mine.cost_unit == "user cost per call"
    with pytest.raises(ValueError, match="DSPy prices hosted LMs only"):
        data.with_cost("usd")


def test_collect_is_cached_on_disk_and_rerun_when_anything_changes(desk, tiny, small, tmp_path):
    examples = requests("dev", per_kind=2)
    first = cp.route.collect(desk, [tiny, small], examples, metric, cache_dir=tmp_path)
    before = _requests_finished(tiny, small)
    again = cp.route.collect(desk, [tiny, small], examples, metric, cache_dir=tmp_path)
    assert _requests_finished(tiny, small) == before  # not a single model call
    assert again.scores.tolist() == first.scores.tolist() and again.queries == first.queries
    assert len(list(tmp_path.glob("*.json"))) == 1
    cp.route.collect(desk, [tiny, small], examples[:-1], metric, cache_dir=tmp_path)  # other data: a new entry
    desk.skills["sum"].signature = desk.skills["sum"].signature.with_instructions("Add.")  # other instructions
    cp.route.collect(desk, [tiny, small], examples, metric, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.json"))) == 3
    (next(tmp_path.glob("*.json"))).write_text("{ not json")  # a damaged entry is collected again, not trusted
    assert cp.route.collect(desk, [tiny, small], examples[:-1], metric, cache_dir=tmp_path).n_examples == 7


def test_agreement_and_verifier_confidences(desk, tiny, small, tmp_path):
    examples = [ex for ex in requests("dev", per_kind=4) if ex.kind == "order number"]

    def looks_like_an_order_number(inputs, prediction):
        return float(prediction.answer.isdigit() and len(prediction.answer) == 5 and prediction.answer in inputs["text"])

    data = cp.route.collect(desk, [tiny, small], examples, metric, confidence=["agreement", looks_like_an_order_number],
                            samples=3, cache_dir=tmp_path)
    agreement, verified = data.confidence("agreement"), data.confidence("verifier")
    assert set(np.unique(agreement)) <= {0.0, 1 / 3, 2 / 3, 1.0}
    answers = [eval_answer for eval_answer in data.frame["answer"]]
    assert all(a for a in answers)
    for i, ex in enumerate(examples):  # the verifier saw exactly the recorded answers
        for j, model in enumerate(data.models):
            answer = data.frame.query("example == @i and model == @model")["answer"].iloc[0]
            import json

            got = json.loads(answer)["answer"]
            assert verified[i, j] == float(got.isdigit() and len(got) == 5 and got in ex.text)
    frame = data.frame
    assert (frame["conf_agreement_calls"] == 3).all() and (frame["conf_agreement_device_s"] > 0).all()
    assert (data.confidence_cost("agreement") > 0).all()   # three extra samples were paid for
    assert (frame["conf_verifier_calls"] == 0).all()          # a plain function calls no LM: it costs nothing
    assert (data.confidence_cost("verifier") == 0).all()
    # in FLOPs, each sample costs what its tokens cost on its model, as the answer itself does
    compute = data.with_cost("compute")
    params = frame.groupby("model")["params"].first()
    assert (compute.confidence_cost("agreement") > 0).all()
    assert compute.confidence_cost("agreement")[0, 1] == frame.loc[1, "conf_agreement_flops"]
    assert frame.loc[1, "conf_agreement_flops"] % (2 * params["zoo-small"]) == 0
    with pytest.raises(ValueError, match="no 'logprob' confidences"):
        data.confidence("logprob")


def _exp_mean_logprob(lm, desk, example):
    """exp(mean token log-probability) of `lm`'s answer value, read straight from DSPy's standard logprobs output:
    the completion is `<field>: <value>` (CompactAdapter), and only the value's tokens count."""
    asked = lm.copy(logprobs=True)
    with dspy.context(lm=asked):
        answer = desk(**example.inputs()).answer
    output = asked.history[-1]["outputs"][0]
    assert output["text"].endswith(": " + answer)
    value, text = [], ""
    for token in output["logprobs"]["content"]:
        text += token["token"]
        if len(text) > len(output["text"]) - len(answer):  # the token reaches into the value (" billing" does)
            value.append(token["logprob"])
    assert text == output["text"] and value
    return math.exp(sum(value) / len(value))


def test_logprob_confidence_comes_from_the_standard_logprobs_output(desk, tiny, small, tmp_path):
    examples = requests("dev", per_kind=2)
    data = cp.route.collect(desk, [tiny, small], examples, metric, confidence="logprob", cache_dir=tmp_path)
    values = data.confidence("logprob")
    assert ((values > 0) & (values <= 1)).all()  # exp(mean token log-probability)
    for i in (0, 1, 2):
        for j, lm in enumerate([tiny, small]):
            assert values[i, j] == pytest.approx(_exp_mean_logprob(lm, desk, examples[i]), rel=1e-6)
    # read from the answer's own call: nothing more to pay, and one call per (example, model)
    assert (data.confidence_cost("logprob") == 0).all()
    assert (data.frame["conf_agreement_calls"] == 0).all()


class AgreesWithSmall(dspy.Module):
    """A verifier with its own LM: small extracts the order number again, the score is whether the answers agree."""

    def __init__(self, small):
        super().__init__()
        self.check = dspy.Predict(cp.zoo.tasks["extract"].signature)
        self.check.lm = small

    def forward(self, kind, text, answer):
        return dspy.Prediction(score=float(self.check(ticket=text).order_id == answer))


def test_a_verifiers_own_lm_calls_count_in_the_cascades_cost(desk, tiny, small, tmp_path):
    examples = [ex for ex in requests("dev", per_kind=4) if ex.kind == "order number"]
    data = cp.route.collect(desk, [tiny, small], examples, metric, confidence=AgreesWithSmall(small),
                            cache_dir=tmp_path, cost="compute")
    frame = data.frame
    assert (frame["conf_verifier_calls"] == 1).all()      # one call of small per verified answer
    small_params = frame.loc[frame.model == "zoo-small", "params"].iloc[0]
    extra = data.confidence_cost("verifier")
    assert (extra > 0).all() and (extra % (2 * small_params) == 0).all()   # FLOPs of small's calls, whoever answered
    # the cascade pays for tiny, the verifier's check of tiny's answer, and small when it defers
    cascade = cp.route.CascadeRouter(confidence="verifier").fit(data)
    curve = cp.route.evaluate(cascade, data).curves["cascade"]
    C = data.cost_matrix
    assert curve.cost.min() == pytest.approx((C[:, 0] + extra[:, 0]).mean())           # never defers
    assert curve.cost.max() == pytest.approx((C[:, 0] + extra[:, 0] + C[:, 1]).mean())  # always defers


def test_failed_calls_are_recorded_and_metric_errors_raise(tiny, small, tmp_path):
    class Picky(dspy.Module):
        def __init__(self):
            super().__init__()
            self.predict = dspy.Predict("ticket -> category")

        def forward(self, ticket):
            if "refund" in ticket:
                raise ValueError("cannot parse the refund ticket")
            return self.predict(ticket=ticket)

    examples = [dspy.Example(ticket=t, category="billing").with_inputs("ticket")
                for t in ("I want a refund for order 12345.", "I was charged twice for order 23456.")]
    data = cp.route.collect(Picky(), [tiny, small], examples, lambda ex, p: float(p.category == ex.category),
                            cache_dir=tmp_path)
    failed = data.frame[data.frame.example == 0]
    assert (failed["score"] == 0).all() and failed["error"].str.contains("cannot parse the refund").all()
    assert (data.frame[data.frame.example == 1]["error"] == "").all()

    def broken_metric(example, prediction):
        raise KeyError("gold")

    with pytest.raises(KeyError, match="gold"):
        cp.route.collect(Picky(), [tiny, small], examples[1:], broken_metric, cache=False)


def test_bad_arguments_say_what_to_do(desk, tiny):
    with pytest.raises(ValueError, match="empty"):
        cp.route.collect(desk, [], requests("dev", 1), metric)
    with pytest.raises(ValueError, match="differ"):
        cp.route.collect(desk, [tiny, tiny], requests("dev", 1), metric)
    with pytest.raises(ValueError, match="with_inputs"):
        cp.route.collect(desk, [tiny], [dspy.Example(kind="sum", text="1 + 2")], metric)
    with pytest.raises(TypeError, match="not a dspy.LM"):
        cp.route.collect(desk, {"tiny": "zoo-tiny"}, requests("dev", 1), metric)
    with pytest.raises(ValueError, match="'logprob' and 'agreement'"):
        cp.route.collect(desk, [tiny], requests("dev", 1), metric, confidence="vibes")


def test_hosted_prices_come_from_dspy_history_entries():
    # DSPy prices hosted LMs itself (LiteLLM's price table, bundled); collect sums the `cost` of the call's entries
    from dspy.clients.model_metadata import model_info

    price = model_info("openai", "gpt-4o-mini")
    usd = 1000 * price["input_cost_per_token"] + 50 * price["output_cost_per_token"]
    entries = [{"usage": {"prompt_tokens": 1000, "completion_tokens": 50}, "cost": usd, "response": None}]
    usage = usage_of(entries)
    assert usage["usd"] == pytest.approx(1000 * 1.5e-7 + 50 * 6e-7) and math.isnan(usage["device_s"])
    assert usage["input_tokens"] == 1000 and usage["output_tokens"] == 50
    assert math.isnan(usage_of([{**entries[0], "cost": None}])["usd"])  # unknown price is not zero


def test_truncated_answers_are_recorded_not_logged(desk, tiny, tmp_path):
    import logging

    class Records(logging.Handler):
        def __init__(self):
            super().__init__()
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    seen = Records()
    logger = logging.getLogger("dspy.clients.lm")  # DSPy's loggers do not propagate: listen on it directly
    logger.addHandler(seen)
    try:
        short = tiny.copy(max_tokens=2)
        with dspy.context(lm=short):
            desk(**requests("dev", per_kind=1)[0].inputs())
        assert any("truncated" in m for m in seen.messages)  # what DSPy says for every such call
        seen.messages.clear()
        data = cp.route.collect(desk, {"short": short}, requests("dev", per_kind=1), metric, cache_dir=tmp_path)
        assert not [m for m in seen.messages if "truncated" in m]
    finally:
        logger.removeHandler(seen)
    assert data.frame["truncated"].all()
    again = cp.route.collect(desk, {"short": short}, requests("dev", per_kind=1), metric, cache_dir=tmp_path)
    assert again.frame["truncated"].all()  # and it survives the cache's JSON
