"""What cp.optimize promises beyond running: stop at any moment, honest scores, clean hands, exact names, lineage."""

from __future__ import annotations

import logging
import sys
import warnings

import dspy
import pytest
from tiny_capitals import exact_match

import compound as cp
from compound.lm import engine_of
from compound.optimize.optimizers import optimizer_class
from compound.optimize.routing import LINEAGE_ATTR

MIPRO_TINY = dict(
    num_candidates=2, max_bootstrapped_demos=1, max_labeled_demos=0, minibatch=False, program_aware_proposer=False,
    data_aware_proposer=False, tip_aware_proposer=False, fewshot_aware_proposer=False,
)


class Three(dspy.Module):
    """Issue 13's reproduction: three steps, the first on its own LM."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = (dspy.Predict("question -> answer") for _ in range(3))

    def forward(self, question):
        self.a(question=question)
        self.b(question=question)
        return self.c(question=question)


@pytest.mark.parametrize("optimizer, settings", [
    ("BootstrapFewShot", {}),  # default max_labeled_demos=16: LabeledFewShot samples the teacher's demos
    ("LabeledFewShot", {}),
    ("MIPROv2", dict(num_trials=3, **MIPRO_TINY)),
])
def test_stop_right_after_start_ends_stopped_with_a_program(configured, dataset, optimizer, settings):
    trainset, valset = dataset
    program = Three()
    program.a.lm = configured
    job = cp.optimize(program, trainset[:4], optimizer, metric=exact_match, valset=valset, display=False, **settings)
    job.stop()
    result = job.result(timeout=300)
    assert job.status == "stopped", job.error
    assert isinstance(result, Three) and result.a.lm is configured
    assert not any(hasattr(pred, LINEAGE_ATTR) for _, pred in result.named_predictors())


def test_names_are_exact_or_case_insensitive_and_errors_suggest_the_closest():
    assert optimizer_class("MIPROv2") is dspy.MIPROv2
    assert optimizer_class("MiproV2") is dspy.MIPROv2
    assert optimizer_class("bootstrapfewshot") is dspy.BootstrapFewShot
    with pytest.raises(ValueError, match="unknown optimizer 'mipro'; did you mean 'MIPROv2'\\?"):
        optimizer_class("mipro")
    with pytest.raises(ValueError, match="did you mean 'BootstrapFewShot'.*GEPA.*MIPROv2"):
        optimizer_class("bootstrap")
    with pytest.raises(ValueError, match="does not run SIMBA: .*dspy.Evaluate"):
        optimizer_class("simba")
    examples = [dspy.Example(q="x", a="y").with_inputs("q")]
    with pytest.raises(ValueError, match="does not run SIMBA"):
        cp.optimize(dspy.Predict("q -> a"), examples, dspy.SIMBA(metric=exact_match), display=False)


class WorseOptimizer(dspy.teleprompt.Teleprompter):
    """Returns a program that answers every question wrongly: a result that scores below the start."""

    def compile(self, student, *, trainset):
        class Wrong(dspy.Module):
            def forward(self, question):
                return dspy.Prediction(answer="nowhere")

        return Wrong()


def test_a_result_worse_than_the_start_is_warned_about_in_result_and_summary(configured, dataset):
    trainset, valset = dataset
    job = cp.optimize(dspy.Predict("question -> answer"), trainset, WorseOptimizer(), metric=exact_match,
                      valset=valset, display=False)
    with pytest.warns(UserWarning, match="below the starting program's"):
        job.result(timeout=300)
    assert [row["kind"] for row in job.table.rows] == ["baseline", "result"]
    assert job.start_score > 0 and job.result_score == 0.0
    assert "warning: the result scores 0.000 on valset, below the starting program's" in job.summary()
    assert "compound-warning" in job._repr_html_()
    assert job.program_at(0).signature.instructions == job.program.signature.instructions


def test_scores_of_different_kinds_are_kept_apart(configured, dataset):
    trainset, valset = dataset
    job = cp.optimize(dspy.Predict("question -> answer"), trainset, "BootstrapFewShot", metric=exact_match,
                      valset=valset, max_bootstrapped_demos=2, max_labeled_demos=0, display=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        job.result(timeout=300)
    rows = job.table.rows
    bootstrap = [row for row in rows if row["kind"] == "bootstrap"]
    assert bootstrap and all(row["best"] is None and row["n"] == 1 for row in bootstrap)
    validation = [row for row in rows if row["kind"] in ("baseline", "result")]
    assert [row["best"] for row in validation] == [max(r["score"] for r in validation[: i + 1]) for i in range(len(validation))]
    assert set(job.curve.series) == {"validation score", "bootstrap score", "best so far"}
    assert len(job.curve.series["best so far"]) == len(validation)
    with pytest.raises(KeyError, match="bootstrap row with no program"):
        job.program_at(bootstrap[0]["trial"])
    assert job.trials["kind"].tolist() == [row["kind"] for row in rows]


def broken_metric(example, prediction, trace=None):
    raise KeyError("gold_answer")


def test_a_metric_that_always_raises_fails_the_job_with_its_own_error(configured, dataset):
    trainset, _ = dataset
    job = cp.optimize(dspy.Predict("question -> answer"), trainset, "BootstrapFewShot", metric=broken_metric,
                      display=False)
    with pytest.raises(KeyError, match="gold_answer") as raised:
        job.result(timeout=300)
    assert job.status == "failed" and job.error is raised.value
    assert "the metric 'broken_metric' raised on all" in job.detail
    assert "'broken_metric' raised on all" in "".join(getattr(raised.value, "__notes__", [])) + job.detail
    assert "failed: KeyError" in job.summary()


def test_stopped_mipro_closes_its_optuna_trials_and_every_callback_start_has_an_end(configured, dataset, monkeypatch):
    import optuna

    studies = []
    create_study = optuna.create_study
    monkeypatch.setattr(optuna, "create_study", lambda *a, **k: studies.append(create_study(*a, **k)) or studies[-1])

    class Counting(dspy.utils.callback.BaseCallback):
        def __init__(self):
            self.starts, self.ends = {}, {}

        def on_lm_start(self, call_id, instance, inputs):
            self.starts[call_id] = "lm"

        def on_lm_end(self, call_id, outputs, exception=None):
            self.ends[call_id] = "lm"

        def on_evaluate_start(self, call_id, instance, inputs):
            self.starts[call_id] = "evaluate"

        def on_evaluate_end(self, call_id, outputs, exception=None):
            self.ends[call_id] = "evaluate"

    counting = Counting()
    trainset, valset = dataset
    with dspy.context(callbacks=[counting]):
        job = cp.optimize(dspy.Predict("question -> answer"), trainset, "MIPROv2", metric=exact_match, valset=valset,
                          num_trials=20, display=False, **MIPRO_TINY)
        job.watch(lambda j: len(j.table.rows) >= 3 and j.stop())
        job.result(timeout=300)
    assert job.status == "stopped"
    assert studies and all(t.state != optuna.trial.TrialState.RUNNING for t in studies[0].trials)
    assert counting.starts and set(counting.starts) == set(counting.ends)


def test_llm_judge_metric_and_mipro_proposer_keep_their_own_lms(configured, capitals_model, dataset):
    model, tokenizer = capitals_model
    judge_lm = cp.LM(model, tokenizer=tokenizer, name="capitals-judge", cache=False, max_tokens=8)
    proposer_lm = cp.LM(model, tokenizer=tokenizer, name="capitals-proposer", cache=False, max_tokens=24)
    judge = dspy.Predict("question, answer -> verdict")  # a one-predictor module named like the program's

    def judged(example, prediction, trace=None):
        with dspy.context(lm=judge_lm):  # the judge runs on its own model through the context
            judge(question=example.question, answer=str(prediction.answer))
        return exact_match(example, prediction)

    wrong = []

    class WhoRunsWhat(dspy.utils.callback.BaseCallback):
        def on_module_start(self, call_id, instance, inputs):  # after compound's tracker re-applied program LMs
            if isinstance(instance, dspy.Module) and not any(
                    hasattr(p, LINEAGE_ATTR) for _, p in instance.named_predictors()):
                wrong.extend(type(instance).__name__ for _, p in instance.named_predictors() if p.lm is configured)

    program = dspy.Predict("question -> answer")
    program.lm = configured
    judge_before = engine_of(judge_lm).stats().requests_total
    proposer_before = engine_of(proposer_lm).stats().requests_total
    trainset, valset = dataset
    with dspy.context(callbacks=[WhoRunsWhat()]):
        job = cp.optimize(program, trainset, "MIPROv2", metric=judged, valset=valset, num_trials=2,
                          prompt_model=proposer_lm, display=False, **MIPRO_TINY)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = job.result(timeout=300)
    assert job.status == "done"
    assert wrong == []  # no judge or proposer module was handed the task's LM
    assert judge.lm is None and result.lm is configured
    assert engine_of(judge_lm).stats().requests_total - judge_before >= len(valset)
    assert engine_of(proposer_lm).stats().requests_total > proposer_before


def test_the_runs_log_lines_go_to_the_job_not_to_the_console(configured, dataset, capsys):
    trainset, valset = dataset
    job = cp.optimize(dspy.Predict("question -> answer"), trainset, "MIPROv2", metric=exact_match, valset=valset,
                      num_trials=2, display=False, **MIPRO_TINY)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        job.result(timeout=300)
    assert any("Trial" in line or "trial" in line for line in job.log), list(job.log)[:5]
    assert not any(line in capsys.readouterr().err for line in list(job.log)[:3])
    # A record logged by this thread (not the job's) still goes where it always went.
    assert logging.getLogger("dspy").handlers and all(not h.filters for h in logging.getLogger("dspy").handlers)


def test_the_optimizers_own_prints_and_progress_bars_go_to_the_job_log(configured, dataset, capsys):
    """BootstrapFewShot prints a summary line and draws a tqdm bar from the job's thread: in a notebook both landed
    in the cell that started the run, under the job's own view. They belong in job.log, the bar as its last frame."""
    trainset, _ = dataset
    streams = sys.stdout, sys.stderr
    job = cp.optimize(dspy.Predict("question -> answer"), trainset, "BootstrapFewShot", metric=exact_match,
                      display=False)
    job.result(timeout=300)
    assert (sys.stdout, sys.stderr) == streams  # the console streams are back as they were once the run ended
    print("printed by the test")  # this thread's output still reaches the console, during and after a run
    out, err = capsys.readouterr()
    assert "Bootstrapped" not in out and "%|" not in err, (out, err)
    assert "printed by the test" in out
    lines = list(job.log)
    assert any(line.startswith("Bootstrapped ") for line in lines), lines
    bars = [line for line in lines if "%|" in line]
    assert len(bars) == 1 and bars[0].startswith("100%") and "\r" not in bars[0], bars  # the bar's final frame
