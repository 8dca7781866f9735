"""cp.show(program): the pipeline description and its three renderings."""

from __future__ import annotations

import json

import dspy
import pytest

import compound as cp
from compound.trace import PIPELINE_MIME_TYPE


class RewriteThenAnswer(dspy.Module):
    def __init__(self):
        super().__init__()
        self.rewrite = dspy.Predict("question -> query")
        self.answer = dspy.ChainOfThought("question, context: list[str] -> answer")
        self.judges = [dspy.Predict("answer -> verdict: bool")]

    def forward(self, question):
        return self.answer(question=question, context=[self.rewrite(question=question).query])


@pytest.fixture
def program():
    p = RewriteThenAnswer()
    p.answer.predict.lm = dspy.LM("local/tiny-llama@lora-qa")
    p.answer.predict.demos = [dspy.Example(question="q", context=["c"], reasoning="r", answer="a")] * 3
    return p


def test_modules_signatures_demos_and_lms(program):
    with dspy.context(lm=dspy.LM("local/base-model")):
        view = cp.show(program)
    by_name = {m["name"]: m for m in view.modules}
    assert list(by_name) == ["rewrite", "answer.predict", "judges[0]"]
    assert by_name["rewrite"]["signature"] == "question -> query"
    assert by_name["answer.predict"]["type"] == "ChainOfThought"
    assert by_name["answer.predict"]["signature"] == "question, context -> reasoning, answer"
    assert [f["type"] for f in by_name["answer.predict"]["inputs"]] == ["str", "list"]
    assert by_name["answer.predict"]["demos"] == 3
    assert by_name["answer.predict"]["lm"] == {"model": "local/tiny-llama@lora-qa", "base": "local/tiny-llama",
                                               "adapter": "lora-qa"}
    assert by_name["answer.predict"]["lm_source"] == "predictor"
    assert by_name["rewrite"]["lm"]["model"] == "local/base-model"
    assert by_name["rewrite"]["lm_source"] == "default"
    assert view.data["dspy_adapter"] == "ChatAdapter"


def test_mimebundle_is_json_and_has_text_and_html_fallbacks(program):
    bundle = cp.show(program)._repr_mimebundle_()
    assert set(bundle) == {PIPELINE_MIME_TYPE, "text/html", "text/plain"}
    assert json.loads(json.dumps(bundle[PIPELINE_MIME_TYPE])) == bundle[PIPELINE_MIME_TYPE]
    assert "answer.predict  ChainOfThought  question, context -> reasoning, answer  demos=3" in bundle["text/plain"]
    assert "local/tiny-llama@lora-qa" in bundle["text/html"]
    assert "&lt;" not in bundle["text/html"].replace("-&gt;", "")  # escaped arrows only, no stray markup


def test_no_lm_configured_is_said_plainly():
    with dspy.context(lm=None):
        text = str(cp.show(dspy.Predict("question -> answer")))
    assert "lm=no LM configured" in text


def test_a_non_program_gets_a_clear_error():
    with pytest.raises(TypeError, match=r"cp.show expects a DSPy program .* cp.show\(dspy.Predict"):
        cp.show("question -> answer")


def test_text_and_html_name_the_adapter_and_where_each_lm_comes_from(program):
    with dspy.context(lm=dspy.LM("local/base-model"), adapter=cp.CompactAdapter()):
        bundle = cp.show(program)._repr_mimebundle_()
    text = bundle["text/plain"]
    assert text.splitlines()[0] == "RewriteThenAnswer: 3 predictors, adapter CompactAdapter (configured)"
    assert "rewrite  Predict  question -> query  demos=0  lm=local/base-model (default)" in text
    assert "lm=local/tiny-llama@lora-qa (own)" in text
    assert "CompactAdapter (configured)" in bundle["text/html"] and "local/tiny-llama@lora-qa (own)" in bundle["text/html"]
    with dspy.context(adapter=None):
        assert "adapter ChatAdapter (DSPy's default)" in str(cp.show(program))
