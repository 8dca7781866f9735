"""cp.optimize on a real tiny model: runs finish, Stop ends them quickly with the best program so far, routing survives."""

from __future__ import annotations

import time

import dspy
import pytest
from tiny_capitals import exact_match

import compound as cp
from compound import jobs
from compound.lm import engine_of
from compound.optimize import OptimizationJob
from compound.optimize.job import VALIDATION_KINDS
from compound.optimize.tracker import describe

# A stop is honoured at the next LM call: only calls already in flight (at most one per worker thread) may still
# finish after it. Counted in LM calls, not seconds, so a busy CI machine cannot fail it; the latency in seconds is
# printed and measured in bench/stop_latency.py.
IN_FLIGHT = 2
# MIPROv2 settings a tiny model can follow: no few-shot prompts, short proposer prompts that fit its context.
MIPRO_SMALL = dict(
    max_bootstrapped_demos=1, max_labeled_demos=0, num_threads=2, minibatch=False, program_aware_proposer=False,
    data_aware_proposer=False, tip_aware_proposer=False, fewshot_aware_proposer=False,
)


class StopWhen:
    """Stops the next OptimizationJob the moment `predicate(job)` holds, from inside the run (deterministic)."""

    def __init__(self, predicate):
        self.predicate = predicate
        self.job: OptimizationJob | None = None
        self.stopped_at: float | None = None
        self.calls_at_stop: int | None = None
        self.trials_at_stop: int | None = None
        self._unsubscribe = jobs.subscribe(self._attach)

    def _attach(self, job):  # jobs announce themselves before their thread starts
        if self.job is None and isinstance(job, OptimizationJob):
            self.job = job
            job.watch(self._check)
            self._unsubscribe()

    def _check(self, _):
        if self.stopped_at is None and self.predicate(self.job):
            self.stopped_at = time.time()
            self.trials_at_stop = len(self.job.table.rows)
            self.calls_at_stop = self.job.lm_calls
            self.job.stop()

    @property
    def latency_s(self) -> float:
        return self.job.ended_at - self.stopped_at

    @property
    def calls_after_stop(self) -> int:
        return self.job.lm_calls - self.calls_at_stop


def test_mipro_stop_ends_run_quickly_and_returns_best_program(configured, dataset):
    trainset, valset = dataset
    stopper = StopWhen(lambda job: len(job.table.rows) >= 3)
    job = cp.optimize(
        dspy.Predict("question -> answer"), trainset, "MIPROv2", metric=exact_match, valset=valset,
        num_candidates=3, num_trials=30, display=False, **MIPRO_SMALL,
    )
    best = job.result(timeout=300)

    assert job.status == "stopped"
    assert stopper.calls_after_stop <= IN_FLIGHT, f"{stopper.calls_after_stop} LM calls after the stop"
    # The evaluation running at the stop was abandoned, not recorded; 30 trials were planned.
    assert len(job.table.rows) == stopper.trials_at_stop == 3
    assert job.table.rows[0]["kind"] == "baseline" and job.table.rows[0]["trial"] == 0
    scored = [row for row in job.table.rows if row["kind"] in VALIDATION_KINDS]
    assert job.best_score == max(row["score"] for row in scored)
    # The result is the best evaluated candidate (a copy), not the unoptimized program or the last candidate.
    assert best is not job.best_program
    assert describe(best) == describe(job.best_program)
    assert best.signature.instructions == job.best_program.signature.instructions
    print(f"MIPROv2 stop latency {stopper.latency_s * 1000:.0f} ms after {stopper.trials_at_stop} trials")


def test_mipro_full_run_reports_trials_progress_and_lm_calls(configured, dataset):
    trainset, valset = dataset
    job = cp.optimize(
        dspy.Predict("question -> answer"), trainset, "MIPROv2", metric=exact_match, valset=valset,
        num_candidates=2, num_trials=3, display=False, **MIPRO_SMALL,
    )
    result = job.result(timeout=300)
    assert job.status == "done" and job.progress == 1.0
    assert len(job.table.rows) >= 5  # compound's baseline, MIPROv2's own, then one evaluation per trial
    assert [r["trial"] for r in job.table.rows][:2] == [0, 1] and job.table.rows[0]["kind"] == "baseline"
    assert job.table.rows[0]["candidate"].startswith("0 demos")
    assert job.lm_calls >= len(valset) * 5
    assert [x for x, _ in job.curve.series["validation score"]] == [float(r["trial"]) for r in job.table.rows]
    best_curve = [y for _, y in job.curve.series["best so far"]]
    assert best_curve == sorted(best_curve)  # best so far never decreases on full evaluations
    assert isinstance(result, dspy.Predict)
    assert job.snapshot()["status"] == "done" and job in jobs.list_jobs()


def test_bootstrap_without_own_evaluation_is_scored_on_valset(configured, dataset):
    trainset, valset = dataset
    job = cp.optimize(dspy.Predict("question -> answer"), trainset, "BootstrapFewShot", metric=exact_match,
                      valset=valset, max_bootstrapped_demos=2, max_labeled_demos=0, display=False)
    result = job.result(timeout=300)
    assert job.status == "done" and len(result.demos) == 2
    start, final = job.table.rows[0], job.table.rows[-1]
    assert start["kind"] == "baseline" and start["n"] == len(valset) and job.start_score == start["score"]
    assert final["kind"] == "result" and final["n"] == len(valset) and job.result_score == final["score"]
    assert job.best_score == max(start["score"], final["score"])
    assert job.program_at(final["trial"]).demos == result.demos


def test_bootstrap_stop_keeps_demos_bootstrapped_so_far(configured, dataset):
    trainset, valset = dataset
    stopper = StopWhen(lambda job: any(row["kind"] == "bootstrap" for row in job.table.rows))
    job = cp.optimize(
        dspy.Predict("question -> answer"), trainset * 3, "BootstrapFewShot", metric=exact_match, valset=valset,
        max_bootstrapped_demos=8, max_labeled_demos=0, display=False,
    )
    result = job.result(timeout=300)
    assert job.status == "stopped"
    assert stopper.calls_after_stop <= IN_FLIGHT
    # The stop came during the first example: bootstrapping ended there, compile() still finished.
    assert [row["kind"] for row in job.table.rows] == ["baseline", "bootstrap"]
    assert len(result.demos) == int(job.table.rows[1]["score"])
    assert result._compiled
    print(f"BootstrapFewShot stop latency {stopper.latency_s * 1000:.0f} ms")


def test_bootstrap_keeps_per_predictor_lms_during_and_after(configured, capitals_model, dataset):
    model, tokenizer = capitals_model
    second_lm = cp.LM(model, tokenizer=tokenizer, name="capitals-second", cache=False, max_tokens=24)

    class TwoSteps(dspy.Module):
        def __init__(self):
            super().__init__()
            self.draft = dspy.Predict("question -> answer")
            self.final = dspy.Predict("question -> answer")

        def forward(self, question):
            self.draft(question=question)
            return self.final(question=question)

    program = TwoSteps()
    program.final.lm = second_lm
    before = engine_of(second_lm).stats().requests_total
    trainset, _ = dataset
    # max_labeled_demos > 0 makes BootstrapFewShot reset_copy() its teacher, which drops `final.lm`.
    job = cp.optimize(program, trainset, "BootstrapFewShot", metric=exact_match,
                      max_bootstrapped_demos=2, max_labeled_demos=1, max_errors=100, display=False)
    result = job.result(timeout=300)

    assert job.status == "done"
    assert result.final.lm is second_lm and result.draft.lm is None
    # Each bootstrapping attempt that reached the metric ran the teacher's `final` step on its own model.
    bootstraps = [row for row in job.table.rows if row["kind"] == "bootstrap"]
    assert bootstraps
    assert engine_of(second_lm).stats().requests_total - before >= len(bootstraps)


def test_gepa_stop_ends_the_iteration_at_the_next_lm_call(configured, dataset):
    trainset, valset = dataset
    lm_calls_of_seed_evals = 2 * len(valset)  # compound's baseline, then GEPA's seed candidate
    stopper = StopWhen(lambda job: job.lm_calls > lm_calls_of_seed_evals + 1)  # inside the first iteration
    job = cp.optimize(
        dspy.Predict("question -> answer"), trainset, "GEPA", metric=exact_match, valset=valset,
        max_metric_calls=400, reflection_minibatch_size=2, num_threads=2, display=False,
    )
    result = job.result(timeout=300)
    assert job.status == "stopped"
    assert stopper.calls_after_stop <= IN_FLIGHT, f"{stopper.calls_after_stop} LM calls after the stop"
    assert job.table.rows[0]["kind"] == "baseline"
    assert job.table.rows[1]["kind"] == "valset" and job.table.rows[1]["candidate"].startswith("#0")
    assert job.progress is not None and job.progress < 0.5  # far from the metric-call budget
    assert len(job.table.rows) == stopper.trials_at_stop
    # The result is GEPA's best valset candidate so far, rebuilt from its instructions.
    assert isinstance(result, dspy.Predict) and job.best_program is not None
    assert result.signature.instructions == job.best_program.signature.instructions
    assert job.best_score == max(row["score"] for row in job.table.rows)
    print(f"GEPA stop latency {stopper.latency_s * 1000:.0f} ms")


def test_gepa_stop_between_iterations_uses_gepas_own_stopper(configured, dataset):
    trainset, valset = dataset
    stopper = StopWhen(lambda job: any(r["kind"] == "valset" for r in job.table.rows))  # after the seed's evaluation
    job = cp.optimize(
        dspy.Predict("question -> answer"), trainset, "GEPA", metric=exact_match, valset=valset,
        max_metric_calls=400, reflection_minibatch_size=2, num_threads=2, track_stats=True, display=False,
    )
    result = job.result(timeout=300)
    assert job.status == "stopped" and stopper.calls_after_stop <= IN_FLIGHT
    assert job.lm_calls == 2 * len(valset)  # GEPA checked its stopper before the first iteration made any call
    assert result.detailed_results.total_metric_calls == len(valset)  # GEPA's own result object
    assert result.signature.instructions == job.program.signature.instructions


def test_stop_before_any_candidate_returns_the_program_unchanged(configured, dataset):
    trainset, valset = dataset
    program = dspy.Predict("question -> answer")
    program.lm = configured
    stopper = StopWhen(lambda job: job.lm_calls > len(valset))  # in MIPROv2's bootstrapping, after the baseline
    job = cp.optimize(program, trainset, "MIPROv2", metric=exact_match, valset=valset,
                      num_candidates=2, num_trials=5, display=False, **MIPRO_SMALL)
    result = job.result(timeout=300)
    assert job.status == "stopped" and stopper.calls_after_stop <= IN_FLIGHT
    assert [row["kind"] for row in job.table.rows] == ["baseline"]
    assert "best program evaluated so far" in job.detail
    assert result is not program and result.demos == [] and result.lm is configured
    assert result.signature.instructions == program.signature.instructions


def test_optimizer_errors_fail_the_job_and_reraise(configured, dataset):
    trainset, _ = dataset
    # MIPROv2 refuses num_candidates without num_trials when auto is off.
    job = cp.optimize(dspy.Predict("question -> answer"), trainset, "MIPROv2", metric=exact_match,
                      num_candidates=2, display=False)
    with pytest.raises(ValueError, match="num_trials"):
        job.result(timeout=60)
    assert job.status == "failed" and job.snapshot()["status"] == "failed"


def test_bad_arguments_say_what_to_do():
    program, examples = dspy.Predict("q -> a"), [dspy.Example(q="x", a="y").with_inputs("q")]
    with pytest.raises(ValueError, match="unknown optimizer 'Adam'"):
        cp.optimize(program, examples, "Adam", metric=exact_match, display=False)
    with pytest.raises(TypeError, match="takes no \\['learning_rate'\\]"):
        cp.optimize(program, examples, "BootstrapFewShot", metric=exact_match, learning_rate=1, display=False)
    with pytest.raises(TypeError, match="with_inputs"):
        cp.optimize(program, [{"q": "x"}], "BootstrapFewShot", metric=exact_match, display=False)
    with pytest.raises(ValueError, match="needs a `metric`"):
        cp.optimize(program, examples, "MIPROv2", display=False)
    with pytest.raises(TypeError, match="dspy.Module"):
        cp.optimize("question -> answer", examples, display=False)
    with pytest.raises(ValueError, match="empty"):
        cp.optimize(program, [], display=False)
    with pytest.raises(TypeError, match="compile\\(\\) takes no"):
        cp.optimize(program, examples, dspy.BootstrapFewShot(metric=exact_match), max_rounds=2, display=False)


def test_optimizer_instance_is_accepted_and_left_as_it_was(configured, dataset):
    trainset, valset = dataset
    optimizer = dspy.BootstrapFewShot(metric=exact_match, max_bootstrapped_demos=1, max_labeled_demos=0)
    before = dict(vars(optimizer))
    program = dspy.Predict("question -> answer")
    job = cp.optimize(program, trainset, optimizer, valset=valset, display=False)
    result = job.result(timeout=300)
    assert job.status == "done" and job.optimizer_name == "BootstrapFewShot"
    # The run hooked a copy: the user's optimizer has exactly the attributes it had (no metric wrapper, no gate).
    assert vars(optimizer).keys() == before.keys() and all(vars(optimizer)[k] is v for k, v in before.items())
    assert program.demos == [] and not hasattr(result, "_compound_lineage")


def test_headless_text_report(configured, dataset):
    import io

    from compound.optimize import TextReporter

    trainset, _ = dataset
    job = cp.optimize(dspy.Predict("question -> answer"), trainset, "BootstrapFewShot", metric=exact_match,
                      max_bootstrapped_demos=1, max_labeled_demos=0, display=False)
    out = io.StringIO()
    reporter = TextReporter(job, interval=0.05, stream=out)
    job.result(timeout=300)
    reporter.thread.join(timeout=30)  # its last words: the summary, once the job ended
    assert "<OptimizationJob 'BootstrapFewShot on Predict' done" in out.getvalue()
    assert "best score=–" in repr(job)  # one bootstrap attempt is no validation score
    assert "trial" in repr(job.table).splitlines()[0]
    assert out.getvalue().rstrip().endswith(repr(job.table).splitlines()[-1].rstrip())
    assert list(job.trials.columns) == ["trial", "kind", "candidate", "n", "score", "best", "elapsed_s"]
