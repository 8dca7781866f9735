"""compound.jobs: the registry the sidebar reads, statuses, graceful stop, interrupts, errors, watchers, subscriptions."""

from __future__ import annotations

import _thread
import threading

import pytest

from compound import jobs


def run_until_stopped(job):
    steps = 0
    while not job.stop_requested:
        steps += 1
        job.update(progress=min(0.9, steps / 1e6), detail=f"{steps} steps")
        job._stop.wait(0.001)
    return steps


def test_job_runs_in_the_background_and_returns():
    started = threading.Event()
    release = threading.Event()

    def work(job):
        started.set()
        release.wait(5)
        return 42

    job = jobs.start(work, name="answer", kind="test")
    assert started.wait(5)
    assert job.status == "running" and not job.done()  # start() returned while the work runs
    assert job in jobs.list_jobs()
    with pytest.raises(TimeoutError, match="still running"):
        job.result(timeout=0.01)
    release.set()
    assert job.result(timeout=5) == 42
    snap = job.snapshot()
    assert snap["status"] == "done" and snap["kind"] == "test" and snap["name"] == "answer"
    assert set(snap) >= {"id", "name", "kind", "status", "progress", "detail", "started_at", "elapsed_s"}
    assert snap["elapsed_s"] >= 0 and snap["ended_at"] >= snap["started_at"]


def test_stop_is_graceful_and_keeps_the_result():
    working = threading.Event()
    job = jobs.start(lambda job: working.set() or run_until_stopped(job), name="counter")
    assert working.wait(5)
    job.stop()
    assert job.status in ("stopping", "stopped")
    kept = job.result(timeout=5)
    assert kept > 0 and job.status == "stopped"
    job.stop()  # stopping a finished job does nothing
    assert job.status == "stopped"


def test_an_interrupt_while_waiting_stops_the_job_and_returns_what_it_kept(capsys):
    working = threading.Event()
    job = jobs.start(lambda job: working.set() or run_until_stopped(job), name="interrupted")
    assert working.wait(5)
    # Ctrl-C (or a kernel interrupt) arrives while this thread waits in result().
    threading.Thread(target=lambda: job._stop.wait(0.2) or _thread.interrupt_main()).start()
    kept = job.result(timeout=30)
    assert job.status == "stopped" and kept > 0
    assert "interrupted; stopping job 'interrupted'" in capsys.readouterr().err


def test_without_an_interrupt_the_wait_does_not_stop_the_job():  # the control case of the test above
    working = threading.Event()
    job = jobs.start(lambda job: working.set() or run_until_stopped(job), name="not interrupted")
    assert working.wait(5)
    assert job.wait(0.3) is False and job.status == "running"
    job.stop()
    assert job.wait(5)


def test_errors_fail_the_job_and_reraise():
    def broken(job):
        raise KeyError("missing column")

    job = jobs.start(broken, name="broken")
    with pytest.raises(KeyError, match="missing column"):
        job.result(timeout=5)
    assert job.status == "failed" and isinstance(job.error, KeyError)
    assert "KeyError: 'missing column'" in job.summary()


def test_watchers_follow_one_job_and_hear_its_end_before_result_returns():
    seen = []
    release = threading.Event()

    def work(job):
        release.wait(5)
        job.update(detail="halfway")
        return "ok"

    job = jobs.start(work, name="watched")
    other = jobs.start(lambda job: "other", name="other")
    unwatch = job.watch(lambda j: seen.append((j.status, j.detail)))
    release.set()
    assert job.result(timeout=5) == "ok" and other.result(timeout=5) == "other"
    assert seen[-1] == ("done", "halfway")  # already heard when result() returned
    unwatch()
    count = len(seen)
    job._changed()
    assert len(seen) == count  # no call after unwatch
    assert all(status in ("running", "done") for status, _ in seen)


def test_subscribers_hear_every_status_and_throttled_progress():
    events = []
    unsubscribe = jobs.subscribe(lambda job: job.name == "steps" and events.append((job.status, job.progress)))
    try:
        def steps(job):
            for i in range(500):
                job.update(progress=i / 500)
            return None

        job = jobs.start(steps, name="steps")
        job.result(timeout=5)
    finally:
        unsubscribe()
    statuses = [status for status, _ in events]
    assert statuses[0] == "running" and statuses[-1] == "done"
    assert len(events) < 50  # 500 updates, throttled
    count = len(events)
    jobs.start(lambda job: None, name="steps").result(timeout=5)
    assert len(events) == count  # unsubscribed: nothing new


def test_a_failing_subscriber_does_not_break_jobs():
    def bad(job):
        raise RuntimeError("subscriber bug")

    unsubscribe = jobs.subscribe(bad)
    try:
        assert jobs.start(lambda job: "fine", name="fine").result(timeout=5) == "fine"
    finally:
        unsubscribe()


def test_registry_keeps_only_recent_finished_jobs():
    finished = [jobs.start(lambda job: None, name=f"j{i}") for i in range(30)]
    for job in finished:
        job.wait(5)
    jobs.start(lambda job: None, name="trigger").wait(5)  # forgetting happens when a job starts
    listed = jobs.list_jobs()
    assert finished[0] not in listed and finished[-1] in listed
    assert sum(job.status == "done" for job in listed) <= 21


def test_display_outside_a_notebook_shows_nothing():
    job = jobs.start(lambda job: None, name="script")
    assert job.display() is False
    job.wait(5)


def test_job_subclass_and_misuse():
    class Twice(jobs.Job):
        def run(self):
            return 2

    job = Twice("twice").start()
    assert job.result(timeout=5) == 2 and job.kind == "job"
    with pytest.raises(RuntimeError, match="already started"):
        job.start()
    with pytest.raises(TypeError, match="callable"):
        jobs.start("not a function", name="bad")
    with pytest.raises(NotImplementedError, match="must implement run"):
        jobs.Job("plain").start().result(timeout=5)
