"""Soak: thousands of DSPy calls through `dspy.Evaluate` and `dspy.Parallel` (16 threads) plus asyncio tasks, with
mixed cancellations (calls that time out and are aborted, tasks cancelled mid-flight). Memory stays flat, nothing
leaks, latency percentiles are reported.

`make test` runs 2,000 calls; `COMPOUND_SOAK_REQUESTS=10000` runs the full soak whose figures the README quotes.
"""

import asyncio
import os
import random
import threading
import time

import dspy

import compound as cp

from conftest import assert_no_leaks

REQUESTS = int(os.environ.get("COMPOUND_SOAK_REQUESTS", "2000"))
THREADS = 16


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Timed(dspy.Module):
    """The user's program: one predictor; every 20th call goes through an LM with a 0.1 ms timeout (aborted)."""

    def __init__(self, signature, lm, impatient):
        super().__init__()
        self.predict = dspy.Predict(signature)
        self.lm, self.impatient = lm, impatient
        self.latencies, self.timeouts, self.lock = [], 0, threading.Lock()

    def forward(self, ticket, nth=0):
        start = time.perf_counter()
        try:
            with dspy.context(lm=self.impatient if nth % 20 == 0 else self.lm):
                prediction = self.predict(ticket=ticket)
        except dspy.LMTimeoutError:
            with self.lock:
                self.timeouts += 1
            raise
        with self.lock:  # end-to-end latency of an answered call, as the user sees it
            self.latencies.append(time.perf_counter() - start)
        return prediction


def test_soak(figures):
    task = cp.zoo.tasks["triage"]
    lm = cp.zoo.lm("tiny")
    impatient = cp.LM("local/zoo-tiny", request_timeout=1e-4, num_retries=0)
    engine = cp.lm.engine_of(lm)
    program = Timed(task.signature, lm, impatient)
    pool = task.train + task.dev + task.test
    examples = [dspy.Example(ticket=pool[i % len(pool)].ticket, category=pool[i % len(pool)].category, nth=i)
                .with_inputs("ticket", "nth") for i in range(REQUESTS)]
    threads_before = threading.active_count()
    # DSPy's own history and trace grow by design (up to 10,000 entries each); off, so RSS shows compound's memory
    with dspy.context(adapter=cp.CompactAdapter(), disable_history=True, max_trace_size=0):
        quarter = REQUESTS // 4
        evaluate = dspy.Evaluate(devset=examples[:quarter], metric=task.metric, num_threads=THREADS,
                                 display_progress=False, max_errors=REQUESTS)
        evaluate(program)  # warm-up: the prefix cache, allocator and thread pools reach their steady state
        rss_warm = rss_mb()
        evaluate = dspy.Evaluate(devset=examples[quarter : 3 * quarter], metric=task.metric, num_threads=THREADS,
                                 display_progress=False, max_errors=REQUESTS)
        score = evaluate(program).score
        parallel = dspy.Parallel(num_threads=THREADS, max_errors=REQUESTS, return_failed_examples=True)
        parallel([(program, ex) for ex in examples[3 * quarter : REQUESTS - 200]])
        cancelled = asyncio.run(async_calls(program, examples[REQUESTS - 200 :]))
    rss_end = rss_mb()
    leaks = assert_no_leaks(engine)
    lat = sorted(program.latencies)
    p50, p99 = lat[len(lat) // 2], lat[int(len(lat) * 0.99)]
    stats = engine.stats()
    figures.add(f"soak: {REQUESTS} DSPy calls on zoo-tiny (Evaluate + Parallel with {THREADS} threads, then 200 "
                f"asyncio tasks): {program.timeouts} timed out and aborted, {cancelled} tasks cancelled; triage "
                f"score {score:.1f}%; latency of {len(lat)} answered calls p50 {p50 * 1e3:.0f} ms, "
                f"p99 {p99 * 1e3:.0f} ms; RSS {rss_warm:.0f} -> {rss_end:.0f} MB "
                f"after warm-up; leaked: {sum(leaks.values())}; mean decode batch {stats.mean_batch_size:.1f}")
    assert len(lat) + program.timeouts >= REQUESTS - 200 and program.timeouts >= (REQUESTS - 200) // 25
    assert cancelled >= 10
    assert sum(leaks.values()) == 0 and engine.alive
    assert rss_end - rss_warm < 16, "memory grew under steady load"
    assert threading.active_count() <= threads_before + 1  # no thread left behind (an executor may linger one)


async def async_calls(program, examples) -> int:
    """200 concurrent `acall`s, 10% cancelled at a random moment; returns how many were cancelled."""
    rng = random.Random(0)
    with dspy.context(lm=program.lm):
        tasks = [asyncio.ensure_future(program.predict.acall(ticket=ex.ticket)) for ex in examples]
    doomed = rng.sample(tasks, len(tasks) // 10)
    await asyncio.sleep(0.05)
    for t in doomed:
        t.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    return sum(isinstance(r, asyncio.CancelledError) for r in results)
