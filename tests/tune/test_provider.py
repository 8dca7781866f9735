"""DSPy's own weight optimizers train LoRA adapters in-process through the provider on every cp.LM, and serve them
from the same engine under model strings that never collide."""

import dspy
import pytest
from dspy.clients.utils_finetune import TrainDataFormat, TrainingStatus

import compound as cp
from compound import adapters

TRAIN_KWARGS = {"max_steps": 6, "batch_size": 16, "r": 8, "lora_alpha": 16}


@pytest.fixture
def convert(small):
    task = cp.zoo.tasks["convert"]
    program = dspy.Predict(task.signature)
    program.lm = small
    return task, program


def test_bootstrap_finetune_trains_a_lora_adapter_served_by_the_same_engine(convert, small):
    task, program = convert
    with dspy.context(adapter=cp.CompactAdapter()):
        tuned = dspy.BootstrapFinetune(metric=task.metric, train_kwargs=TRAIN_KWARGS, num_threads=8).compile(
            program, trainset=task.train[:48])
        pred = tuned(quantity="12 km in m")
    model = tuned.lm.model
    assert model.startswith("local/zoo-small@ft-") and tuned.lm.provider is small.provider
    name = model.partition("@")[2]
    info = cp.adapters.manifest(name)
    assert info["method"] == "lora" and info["hyperparameters"]["max_steps"] == 6
    assert info["data"]["source"] == "chats" and 0 < info["data"]["examples"] <= 48
    assert adapters.read(name)[0]["r"] == 8
    assert adapters.loaded_model_of(tuned.lm) is adapters.loaded_model_of(small)  # one engine, one copy of the weights
    assert isinstance(pred.value, str)


def test_better_together_alternates_prompts_and_lora_weights(convert):
    task, program = convert
    with dspy.context(adapter=cp.CompactAdapter()):
        optimizer = dspy.BetterTogether(
            metric=task.metric,
            p=dspy.LabeledFewShot(k=0),  # demos only confuse a 2M-parameter model; the weights are the point here
            w=dspy.BootstrapFinetune(metric=task.metric, train_kwargs=TRAIN_KWARGS, num_threads=8),
        )
        best = optimizer.compile(program, trainset=task.train[:40], valset=task.dev[:16], strategy="w -> p -> w")
    by_strategy = {c["strategy"]: c["program"] for c in best.candidate_programs}
    assert {"w", "w -> p", "w -> p -> w"} <= set(by_strategy)
    first, second = by_strategy["w"].lm.model, by_strategy["w -> p -> w"].lm.model
    assert "@ft-" in first and "@ft-" in second and first != second
    # the second weight step continued from the first adapter
    assert cp.adapters.manifest(second.partition("@")[2])["started_from"] == first.partition("@")[2]
    assert cp.adapters.manifest(first.partition("@")[2])["started_from"] is None


def test_the_provider_job_reports_status_and_model_strings_never_collide(small):
    rows = [{"messages": [{"role": "system", "content": "Convert the quantity."},
                          {"role": "user", "content": f"quantity: {n} km in m"},
                          {"role": "assistant", "content": f"value: {n * 1000}"}]} for n in range(1, 17)]
    jobs = [small.finetune(rows, TrainDataFormat.CHAT, {"max_steps": 2, "batch_size": 8}) for _ in range(3)]
    lms = [job.result(timeout=300) for job in jobs]
    assert [job.status() for job in jobs] == [TrainingStatus.succeeded] * 3
    assert jobs[0].finetune_job.kind == "finetune" and jobs[0].progress() == 1.0
    models = [lm.model for lm in lms]
    assert len(set(models)) == 3 and all(m.startswith("local/zoo-small@ft-") for m in models)
    assert {lm.kwargs["metadata"]["compound_weights"] for lm in lms} == {small.kwargs["metadata"]["compound_weights"]}
    names = {r["name"] for r in cp.adapters.list().rows}
    assert {m.partition("@")[2] for m in models} <= names
