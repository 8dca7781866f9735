"""cp.costs: every predictor call of a dspy.Evaluate run charged to the predictor that made it."""

from __future__ import annotations

import dspy
import pytest

import compound as cp
from compound.testing import scripted_lm
from compound.trace import ModuleCosts


class TwoSteps(dspy.Module):
    def __init__(self, first_lm, second_lm):
        super().__init__()
        self.first = dspy.Predict("question -> draft")
        self.second = dspy.Predict("question, draft -> answer")
        self.first.lm, self.second.lm = first_lm, second_lm

    def forward(self, question):
        draft = self.first(question=question).draft
        return self.second(question=question, draft=draft)


def questions(n):
    return [dspy.Example(question=f"q{i}", answer="yes").with_inputs("question") for i in range(n)]


def exact(example, prediction, trace=None):
    return float(prediction.answer == example.answer)


def test_each_predictor_is_charged_its_own_calls_tokens_and_failures():
    first = scripted_lm(["draft: maybe"] * 3, chunk=4)  # ScriptedEngine reports len(text) // chunk output tokens
    second = scripted_lm(["answer: yes", "", "answer: yes"], chunk=1)  # the 2nd answer is empty: unreadable
    program = TwoSteps(first, second)
    with dspy.context(adapter=cp.CompactAdapter()):
        report = cp.costs(program, questions(3), metric=exact, num_threads=1)
    assert [(r["module"], r["model"], r["calls"], r["errors"]) for r in report.rows()] == [
        ("first", "local/scripted", 3, 0), ("second", "local/scripted", 3, 1)]
    assert report["first"].completion_tokens == 3 * (len("draft: maybe") // 4)
    assert report["second"].completion_tokens == 2 * len("answer: yes") + 1  # the empty answer's token was spent too
    assert report["first"].prompt_tokens == 3  # one per call, as the engine reported
    assert report.score == 66.67  # Evaluate rounds: two of three examples right, the failed one scores 0
    assert len(report.results) == 3 and report.n == 3
    assert len(report["second"].latencies) == 3 and report["second"].latency_p50 >= 0


def test_a_predictor_served_by_several_models_shows_each_models_share():
    program = dspy.Predict("question -> answer")
    lms = [scripted_lm(["answer: yes"] * 3), scripted_lm(["answer: yes"] * 3)]
    lms[1].model = "local/other"
    tracker = ModuleCosts(program)
    with dspy.context(callbacks=[tracker], adapter=cp.CompactAdapter()):
        for lm in (lms[0], lms[0], lms[1]):
            program.lm = lm
            program(question="q")
    assert tracker["self"].model_label == "scripted 67% | other 33%"


def test_text_and_html_records_show_every_module():
    program = TwoSteps(scripted_lm(["draft: d"] * 2), scripted_lm(["answer: yes"] * 2))
    with dspy.context(adapter=cp.CompactAdapter()):
        report = cp.costs(program, questions(2), metric=exact, num_threads=1)
    text, page = repr(report), report._repr_html_()
    assert text.startswith("ProgramCosts: 2 examples in ") and "score 100.0%" in text
    assert [line.split()[:4] for line in text.splitlines()[2:]] == [
        ["first", "local/scripted", "2", "0"], ["second", "local/scripted", "2", "0"]]
    assert page.count("<tr>") == 3 and "<code>second</code>" in page


def test_bad_input_says_what_to_do():
    with pytest.raises(TypeError, match=r"cp.costs expects a DSPy program .*dspy\.Predict"):
        cp.costs("question -> answer", questions(1))
    with pytest.raises(ValueError, match="at least one example"):
        cp.costs(dspy.Predict("question -> answer"), [])
    program = TwoSteps(scripted_lm(["draft: d"]), scripted_lm(["answer: yes"]))
    with dspy.context(adapter=cp.CompactAdapter()):
        report = cp.costs(program, questions(1), num_threads=1)
    assert report.score is None  # no metric, no score
    with pytest.raises(KeyError, match=r"no predictor 'third' .* \['first', 'second'\]"):
        report["third"]
