"""cp.synthesize distils the zoo's `small` into labels for `tiny`'s task and keeps only labels that pass its checks."""

import dspy
import pytest

import compound as cp

pytestmark = pytest.mark.slow  # the zoo's small model answers and scores every example

EXTRACT = cp.zoo.tasks["extract"]


@pytest.fixture(scope="module")
def small():
    return cp.zoo.lm("small")


@pytest.fixture(scope="module")
def student():
    return dspy.Predict(EXTRACT.signature)


@pytest.fixture(autouse=True)
def compact_adapter():
    with dspy.context(adapter=cp.CompactAdapter()):
        yield


def gold_by_ticket():
    return {ex.ticket: ex for ex in EXTRACT.test}


def test_kept_labels_are_more_often_right_than_the_teacher_alone(small, student):
    inputs = [{"ticket": ex.ticket} for ex in EXTRACT.test[:48]]
    kept = cp.synthesize(student, inputs, teacher=small)
    gold = gold_by_ticket()
    teacher = dspy.Predict(EXTRACT.signature)
    teacher.lm = small
    teacher_right = sum(EXTRACT.metric(gold[i["ticket"]], teacher(**i)) for i in inputs) / len(inputs)
    kept_right = sum(EXTRACT.metric(gold[ex.ticket], ex) for ex in kept) / len(kept)
    assert kept and kept_right > teacher_right  # the checks filter out more wrong labels than right ones
    assert len(kept) + sum(kept.rejected.values()) == len(inputs)
    assert kept.rejected["disagreement"] + kept.rejected["low confidence"] > 0
    first = kept[0]
    assert first.dspy_provenance["teacher"] == "local/zoo-small" and first.dspy_provenance["agreement"] >= 2 / 3
    assert list(first.labels().keys()) == ["order_id"]  # provenance never becomes a label
    confidences = [ex.dspy_provenance["confidence"] for ex in kept]
    assert confidences == sorted(confidences, reverse=True) and min(confidences) >= 0.5


def test_metric_repeats_and_leaks_filter_inputs(small, student):
    tickets = [ex.ticket for ex in EXTRACT.test[:12]]
    inputs = tickets + [tickets[0].upper(), EXTRACT.dev[0].ticket]  # a near copy and a leaked dev ticket

    def in_ticket(example, prediction, trace=None):
        return prediction.order_id in example.ticket

    kept = cp.synthesize(student, inputs, teacher=small, metric=in_ticket, against={"dev": EXTRACT.dev}, n=5,
                         samples=1, min_agreement=0.0, min_confidence=0.0)
    assert kept.rejected["duplicate"] == 1 and kept.rejected["leak"] == 1
    assert len(kept) <= 5 and all(ex.order_id in ex.ticket for ex in kept)
    assert all(ex.ticket in tickets for ex in kept)


def test_bad_teacher_and_inputs_get_clear_errors(student):
    with pytest.raises(TypeError, match="teacher must be a dspy.LM"):
        cp.synthesize(student, ["a ticket"], teacher="small")
    with pytest.raises(ValueError, match="lacks the target's input fields"):
        cp.synthesize(student, [{"text": "x"}], teacher=cp.zoo.lm("small"))
    with pytest.raises(ValueError, match="needs inputs"):
        cp.synthesize(student, [], teacher=cp.zoo.lm("small"))


def test_a_generative_teacher_proposes_new_inputs_from_seeds(student):
    # No zoo model writes tickets, so DSPy's own DummyLM plays the generative teacher: it answers the proposal
    # prompt (which shows the seed) with a new ticket, and the labelling prompt (which shows that ticket) with a label.
    from dspy.utils.dummies import DummyLM

    teacher = DummyLM({"SEED-A": {"ticket": "NEW: order 55555 is late"}, "NEW: order": {"order_id": "55555"}})
    with dspy.context(adapter=dspy.ChatAdapter()):
        made = cp.synthesize(student, [], teacher=teacher, seeds=[{"ticket": "SEED-A: order 11111 is broken"}],
                             n=2, max_proposals=4, metric=lambda ex, pred, trace=None: pred.order_id in ex.ticket)
    assert [(ex.ticket, ex.order_id) for ex in made] == [("NEW: order 55555 is late", "55555")]
    assert made[0].dspy_provenance["proposed"] is True
    assert made.rejected["duplicate"] == 3  # the same proposal again is not a new input
