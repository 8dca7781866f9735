"""Abort storm (vLLM's `test_abort`, and beyond): 100 calls from 16 threads and 16 asyncio tasks, 10% cancelled at
random moments by every route a caller has (Future.cancel, engine.abort, asyncio cancel, a timeout). The other 90
equal their solo greedy output token for token; afterwards 0 slots, 0 requests and 0 K/V blocks are leaked."""

import asyncio
import random
import threading
from concurrent.futures import CancelledError, ThreadPoolExecutor

from compound.lm import RequestAbortedError, SamplingParams

from conftest import PROMPTS, assert_no_leaks, solo_greedy

CALLS, THREADS, TASKS, CANCELLED = 100, 16, 16, 10
MAX_TOKENS = 24


def test_abort_storm(model_and_tokenizer, make_engine, figures):
    model, tok = model_and_tokenizer
    engine = make_engine(max_batch_size=16, max_prefill_tokens=64)
    engine.eos_ids = frozenset()  # no early EOS: a cancelled 200-token call is surely still running when cancelled
    reference = solo_greedy(engine, tok, PROMPTS, MAX_TOKENS)
    rng = random.Random(0)
    # the cancelled calls, spread over the four routes (call i's route is i % 4)
    doomed = {i for r, n in zip(range(4), (3, 3, 2, 2)) for i in rng.sample(range(r, CALLS, 4), n)}
    plan = [(i, PROMPTS[i % len(PROMPTS)], i in doomed) for i in range(CALLS)]
    routes = ["future.cancel", "asyncio.cancel", "engine.abort", "timeout"]  # call i is cancelled by routes[i % 4]
    outcomes, start = {}, threading.Barrier(2)  # threads and the task loop start together

    def cancel_later(seq, how, delay):
        threading.Event().wait(delay)  # a random moment: queued, prefilling or decoding
        if how == "engine.abort":
            engine.abort(seq.id)
        else:
            seq.future.cancel()

    def thread_call(i, prompt, cancel):
        # a cancelled call asks for many tokens, so it is surely still running when cancelled
        seq = engine.submit(tok(prompt)["input_ids"], SamplingParams(max_tokens=200 if cancel else MAX_TOKENS))
        if not cancel:
            outcomes[i] = seq.future.result(60).output_ids
            return
        how = routes[i % 4]  # even calls run on threads: future.cancel or engine.abort
        cancel_later(seq, how, rng_delays[i])
        try:
            seq.future.result(60)
            outcomes[i] = "finished"
        except (RequestAbortedError, CancelledError) as exc:
            outcomes[i] = type(exc).__name__

    async def task_call(i, prompt, cancel):
        seq = engine.submit(tok(prompt)["input_ids"], SamplingParams(max_tokens=200 if cancel else MAX_TOKENS))
        if not cancel:
            outcomes[i] = (await asyncio.wrap_future(seq.future)).output_ids
            return
        if routes[i % 4] == "asyncio.cancel":  # at a random moment
            waiting = asyncio.ensure_future(asyncio.wrap_future(seq.future))
            await asyncio.sleep(rng_delays[i])
            waiting.cancel()
        else:  # a timeout: wait_for cancels the awaited future when it expires
            waiting = asyncio.wait_for(asyncio.wrap_future(seq.future), timeout=rng_delays[i])
        try:
            await waiting
            outcomes[i] = "finished"
        except (asyncio.CancelledError, asyncio.TimeoutError) as exc:
            outcomes[i] = type(exc).__name__

    rng_delays = {i: rng.uniform(0.0, 0.3) for i, _, cancel in plan if cancel}
    by_thread = [c for c in plan if c[0] % 2 == 0]
    by_task = [c for c in plan if c[0] % 2 == 1]

    def run_tasks():
        async def main():
            limit = asyncio.Semaphore(TASKS)

            async def one(call):
                async with limit:
                    await task_call(*call)

            await asyncio.gather(*(one(c) for c in by_task))

        start.wait()
        asyncio.run(main())

    with ThreadPoolExecutor(THREADS) as pool:
        loop_thread = threading.Thread(target=run_tasks)
        loop_thread.start()
        start.wait()
        list(pool.map(lambda call: thread_call(*call), by_thread))
        loop_thread.join(120)

    survivors = [i for i, _, cancel in plan if not cancel]
    exact = sum(outcomes[i] == reference[p] for i, p, cancel in plan if not cancel)
    cancelled = [outcomes[i] for i, _, cancel in plan if cancel]
    leaks = assert_no_leaks(engine)
    stats = engine.stats()
    by_route = ", ".join(f"{sum(1 for i in doomed if i % 4 == r)} by {name}" for r, name in enumerate(routes))
    figures.add(f"abort storm: {CALLS} calls from {THREADS} threads + {TASKS} asyncio tasks, {CANCELLED} cancelled "
                f"({by_route}): {exact}/{len(survivors)} others token-exact vs solo greedy; "
                f"{stats.requests_aborted} aborted in the engine; leaked: {leaks['slots_leaked']} slots, "
                f"{leaks['requests_leaked']} requests, {leaks['blocks_leaked']} K/V blocks")
    assert exact == len(survivors) == CALLS - CANCELLED
    assert all(o != "finished" for o in cancelled), cancelled  # 200 tokens never finish before the cancel
    assert stats.requests_aborted == CANCELLED and stats.errors == 0
    assert leaks == {"slots_leaked": 0, "requests_leaked": 0, "blocks_leaked": 0}
    assert engine.submit(tok("hello")["input_ids"], SamplingParams(max_tokens=4)).future.result(30).output_tokens == 4
