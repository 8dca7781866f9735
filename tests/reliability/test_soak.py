"""Soak: thousands of DSPy calls through `dspy.Evaluate` and `dspy.Parallel` (16 threads) plus asyncio tasks, with
mixed cancellations (calls that time out and are aborted, tasks cancelled mid-flight). Memory stays flat, nothing
leaks, latency percentiles are reported.

`COMPOUND_SOAK_REQUESTS=2000` runs a shorter soak (the default is the full 10,000, ~40 s on 2 cores).
"""

import asyncio
import gc
import os
import random
import threading
import time

import dspy

import compound as cp

from conftest import assert_no_leaks

REQUESTS = int(os.environ.get("COMPOUND_SOAK_REQUESTS", "10000"))
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
    chunk, rss, scores = 1000, [], []
    # DSPy's own history and trace grow by design (up to 10,000 entries each); off, so RSS shows compound's memory
    with dspy.context(adapter=cp.CompactAdapter(), disable_history=True, max_trace_size=0):
        evaluated = examples[: REQUESTS * 4 // 5]
        for at in range(0, len(evaluated), chunk):  # the first chunk warms up caches, allocator and thread pools
            evaluate = dspy.Evaluate(devset=evaluated[at : at + chunk], metric=task.metric, num_threads=THREADS,
                                     display_progress=False, max_errors=REQUESTS)
            scores.append(evaluate(program).score)
            gc.collect()
            rss.append(rss_mb())
        # a Parallel keeps its failed examples and their exceptions: a fresh one, dropped after use
        dspy.Parallel(num_threads=THREADS, max_errors=REQUESTS)(
            [(program, ex) for ex in examples[len(evaluated) : REQUESTS - 200]])
        cancelled = asyncio.run(async_calls(program, examples[REQUESTS - 200 :]))
    leaks = assert_no_leaks(engine)
    lat = sorted(program.latencies)
    p50, p99 = lat[len(lat) // 2], lat[int(len(lat) * 0.99)]
    stats = engine.stats()
    growth = max(rss[1:]) - rss[1] if len(rss) > 1 else 0.0
    figures.add(f"soak: {REQUESTS} DSPy calls on zoo-tiny (Evaluate + Parallel with {THREADS} threads, then 200 "
                f"asyncio tasks): {program.timeouts} timed out and aborted, {cancelled} tasks cancelled; triage score "
                f"{sum(scores) / len(scores):.0f}%; latency of {len(lat)} answered calls p50 {p50 * 1e3:.0f} ms, "
                f"p99 {p99 * 1e3:.0f} ms; RSS after each 1,000 calls {' '.join(f'{r:.0f}' for r in rss)} MB "
                f"(+{growth:.1f} MB after warm-up); leaked: {sum(leaks.values())}; mean decode batch "
                f"{stats.mean_batch_size:.1f}")
    assert len(lat) + program.timeouts >= REQUESTS - 200 and program.timeouts >= (REQUESTS - 200) // 25
    assert cancelled >= 10
    assert sum(leaks.values()) == 0 and engine.alive
    assert growth < 8, "memory grew under steady load"
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
