"""program=: the program's own model scores labels, on the served prompt. Checked on injected corruptions."""

import dspy
import numpy as np
import pytest

import compound as cp
from compound.curate.likelihood import LabelScorer
from compound.curate.noise import inject_noise, precision_recall

pytestmark = pytest.mark.slow  # the zoo's small model answers and scores every example


@pytest.fixture(scope="module")
def small():
    return cp.zoo.lm("small")


@pytest.fixture(autouse=True)
def compact_adapter():
    with dspy.context(adapter=cp.CompactAdapter()):
        yield


def step(task, lm):
    program = dspy.Predict(task.signature)
    program.lm = lm
    return program


def test_the_scored_prompt_is_the_served_prompt(small):
    # the greedy answer the engine served must be, token by token, the argmax of our teacher-forced forward
    import torch

    extract = cp.zoo.tasks["extract"]
    scorer = LabelScorer(step(extract, small))
    examples = extract.test[:4]
    answers = scorer.answers(examples, "order_id")
    for example, answer in zip(examples, answers):
        prompt, target = scorer._token_pairs([{"ticket": example.ticket}], [{"order_id": answer}])[0]
        with torch.inference_mode():
            logits = scorer.loaded.model(input_ids=torch.tensor([prompt + target])).logits[0]
        assert logits[len(prompt) - 1:-1].argmax(-1).tolist() == target


def test_free_text_labels_flagged_by_the_programs_model(small):
    extract = cp.zoo.tasks["extract"]
    rows, truth = inject_noise(extract.test[:100], label_field="order_id", wrong_labels=0.1, near_duplicates=0,
                               seed=3)
    report = cp.curate(rows, program=step(extract, small))
    assert report.info["labels"] == {"order_id": "program model likelihood"}
    assert min(precision_recall(set(report.flagged("label")), set(truth.wrong_labels))) >= 0.8
    some = next(iter(report.flagged("label")))
    assert "the program's model answers" in report.flagged("label")[some]
    assert np.nanmax(report.checks["label"].score) <= 1.0


def test_small_label_sets_average_the_classifier_and_the_model(small):
    triage = cp.zoo.tasks["triage"]
    rows, truth = inject_noise(triage.test[:80], label_field="category", wrong_labels=0.1, near_duplicates=0, seed=2)
    report = cp.curate(rows, program=step(triage, small))
    assert report.info["labels"] == {"category": "classifier + program model"}
    assert min(precision_recall(set(report.flagged("label")), set(truth.wrong_labels))) >= 0.8


def test_a_program_that_is_not_served_by_compound_is_refused():
    triage = cp.zoo.tasks["triage"]
    program = step(triage, dspy.LM("openai/gpt-4o-mini"))
    with pytest.raises(TypeError, match="compound LM"):
        cp.curate(triage.test[:10], program=program)
    with pytest.raises(ValueError, match="exactly one predictor"):
        cp.curate(triage.test[:10], program=dspy.Module())
