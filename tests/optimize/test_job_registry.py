"""compound.jobs: the registry the sidebar reads, statuses, graceful stop, errors, subscriptions."""

from __future__ import annotations

import threading
import time

import pytest

from compound import jobs


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
    def count(job):
        n = 0
        while not job.stop_requested:
            n += 1
            job.update(progress=min(1.0, n / 1e9), detail=f"{n} steps")
            time.sleep(0.001)
        return n

    job = jobs.start(count, name="counter")
    time.sleep(0.05)
    job.stop()
    assert job.status in ("stopping", "cancelled")
    kept = job.result(timeout=5)
    assert kept > 0 and job.status == "cancelled"
    job.stop()  # stopping a finished job does nothing
    assert job.status == "cancelled"


def test_errors_fail_the_job_and_reraise():
    def broken(job):
        raise KeyError("missing column")

    job = jobs.start(broken, name="broken")
    with pytest.raises(KeyError, match="missing column"):
        job.result(timeout=5)
    assert job.status == "failed" and isinstance(job.error, KeyError)


def test_subscribers_hear_every_status_and_throttled_progress():
    events = []
    unsubscribe = jobs.subscribe(lambda job: events.append((job.status, job.progress)))
    try:
        def steps(job):
            for i in range(500):
                job.update(progress=i / 500)
            time.sleep(0.3)  # let the trailing notification fire
            return None

        job = jobs.start(steps, name="steps")
        job.result(timeout=5)
    finally:
        unsubscribe()
    statuses = [status for status, _ in events]
    assert statuses[0] == "running" and statuses[-1] == "done"
    assert len(events) < 50  # 500 updates, throttled
    assert (("running", 499 / 500)) in events  # the last update before the end was not lost
    jobs.start(lambda job: None, name="after").result(timeout=5)
    time.sleep(0.05)
    assert statuses == [status for status, _ in events]  # unsubscribed: nothing new


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
