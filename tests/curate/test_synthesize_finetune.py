"""Labels from cp.synthesize are training data for cp.finetune as they are: the provenance they carry never enters
the training rows, and the adapter learns from the teacher's kept labels."""

import dspy
import pytest

import compound as cp

pytestmark = pytest.mark.slow  # the zoo's small model labels tickets; tiny trains an adapter for a few steps

EXTRACT = cp.zoo.tasks["extract"]


@pytest.fixture(autouse=True)
def isolated_adapters(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPOUND_ADAPTERS", str(tmp_path / "adapters"))
    with dspy.context(adapter=cp.CompactAdapter()):
        yield


def tiny_student():
    student = dspy.Predict(EXTRACT.signature)
    student.lm = cp.zoo.lm("tiny")
    return student


def test_synthesized_labels_train_like_plain_examples_without_their_provenance():
    inputs = [{"ticket": ex.ticket} for ex in EXTRACT.train[:40]]
    kept = cp.synthesize(dspy.Predict(EXTRACT.signature), inputs, teacher=cp.zoo.lm("small"))
    assert len(kept) >= 4 and all(ex.dspy_provenance["teacher"] == "local/zoo-small" for ex in kept)
    plain = [dspy.Example(ticket=ex.ticket, order_id=ex.order_id).with_inputs("ticket") for ex in kept]

    synthesized_job = cp.finetune(tiny_student(), kept, name="synth", display=False, max_steps=1)
    synthesized_job.result()
    plain_job = cp.finetune(tiny_student(), plain, name="plain", display=False, max_steps=1)
    plain_job.result()

    assert synthesized_job.data_info["sha256"] == plain_job.data_info["sha256"]
    assert cp.adapters.manifest("synth")["data"]["sha256"] == synthesized_job.data_info["sha256"]
