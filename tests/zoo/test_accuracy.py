"""The full zoo, built once in the configured cache ($COMPOUND_CACHE or ~/.cache/compound) and shared with the
notebook run: accuracy properties on held-out data (zero-shot and with demos), served through compound's engine and
DSPy, and a quiet load in a fresh process (its time is measured by bench/zoo.py)."""

import subprocess
import sys
import textwrap

import dspy
import pytest

import compound as cp
from compound.zoo.scores import score_lms

pytestmark = pytest.mark.slow
HARD = ("extract", "convert", "add")
EASY = ("triage",)


@pytest.fixture(scope="module")
def scores():
    cp.zoo.build()  # builds on the first run of a fresh machine, verifies hashes afterwards
    table = score_lms({"tiny": cp.zoo.lm("tiny"), "small": cp.zoo.lm("small")}, n=100, num_threads=8)
    print(f"\nzoo scores on held-out test data:\n{table}")
    return table.scores


def test_both_models_are_usable_on_the_easy_tasks(scores):
    for task in EASY:
        chance = cp.zoo.tasks[task].chance
        for model in ("tiny", "small"):
            assert scores[model][task] >= 2 * chance, (model, task, scores[model][task])


def test_small_clearly_beats_tiny_on_the_harder_tasks(scores):
    gaps = {task: scores["small"][task] - scores["tiny"][task] for task in HARD}
    assert sum(gaps.values()) / len(gaps) >= 0.15, gaps
    assert all(gap >= -0.05 for gap in gaps.values()), gaps


def test_each_model_is_far_from_perfect_somewhere(scores):
    for model in ("tiny", "small"):
        assert min(scores[model].values()) <= 0.6, (model, scores[model])


@pytest.mark.parametrize("model", ["tiny", "small"])
def test_sixteen_demos_fit_the_context_and_do_not_derail_the_models(model):
    """BootstrapFewShot's default adds up to 16 demos: the longest task's prompt fits, and triage stays right."""
    for name, floor in (("triage", 90.0), ("extract", None)):
        task = cp.zoo.tasks[name]
        program = dspy.Predict(task.signature)
        program.lm, program.demos = cp.zoo.lm(model), task.train[:16]
        with dspy.context(adapter=cp.CompactAdapter()):
            spent = cp.costs(program, task.dev[:40], metric=task.metric)
        assert spent["self"].errors == 0, (name, model)  # no context overflow, no empty or unreadable answer
        if floor is not None:
            assert spent.score >= floor, (name, model, spent.score)


def test_zoo_lm_is_a_dspy_lm_served_by_the_engine():
    lm = cp.zoo.lm("tiny")
    assert isinstance(lm, dspy.LM) and lm.model == "local/zoo-tiny"
    program = dspy.Predict(cp.zoo.tasks["triage"].signature)
    with dspy.context(lm=lm, adapter=cp.CompactAdapter()):
        pred = program(ticket="Hi, I was charged twice for order 12345.")
    assert pred.category == "billing"
    assert cp.lm.engine_of(lm).stats().requests_finished >= 1


def test_a_built_zoo_loads_in_a_fresh_process_quietly_and_without_rebuilding():
    """Loading is checked here; how long it takes is a benchmark figure (bench/zoo.py), not a test threshold."""
    folders = cp.zoo.build()
    created = {name: cp.zoo.manifest(name)["created"] for name in folders}
    script = textwrap.dedent("""
        import dspy, compound as cp
        tiny, small = cp.zoo.lm("tiny"), cp.zoo.lm("small")
        triage = dspy.Predict(cp.zoo.tasks["triage"].signature)
        with dspy.context(lm=small, adapter=cp.CompactAdapter()):
            print(triage(ticket="Hi, I was charged twice for order 12345.").category)
        print(cp.lm.engine_of(tiny).stats().requests_finished, cp.lm.engine_of(small).stats().requests_finished)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["billing", "0", "1"]
    assert out.stderr == "", out.stderr  # no progress bars, no warnings: a built zoo loads silently
    assert {name: cp.zoo.manifest(name)["created"] for name in folders} == created  # loaded, not rebuilt
