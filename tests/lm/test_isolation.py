"""A request costs only itself: abort and cancel, faults at each stage, OOM backoff, prefix-cache bookkeeping,
log-probabilities. Real tiny models; faults come from the engine's own injection hook (`engine.faults`)."""

import asyncio
import concurrent.futures
import threading

import pytest
import torch

from compound.lm import (
    EngineDeadError,
    InvalidRequestError,
    RequestAbortedError,
    RequestFailedError,
    SamplingParams,
)
from compound.lm.kv import PrefixCache, SlotKVCache

from test_engine import PROMPTS, hf_greedy, ids


def wait_idle(engine, timeout=30):
    """Block until the engine holds no request (checked on its own thread's bookkeeping)."""
    done = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if not engine.scheduler.running and not engine.scheduler.waiting and not engine._live and engine._inbox.empty():
            return
        done.wait(0.01)
    raise AssertionError("engine did not become idle")


def test_abort_by_id_frees_the_slot_and_spares_the_others(varied, make_engine):
    model, tok = varied
    engine = make_engine()
    engine.eos_ids = frozenset()  # nothing ends early: the victim is surely unfinished when aborted
    victim = engine.submit(ids(tok, PROMPTS[0]), SamplingParams(max_tokens=200))
    others = [engine.submit(ids(tok, p), SamplingParams(max_tokens=12)) for p in PROMPTS[1:]]
    engine.abort(victim.id)
    with pytest.raises(RequestAbortedError, match=f"request {victim.id} was aborted"):
        victim.future.result(timeout=30)
    assert [s.future.result(timeout=60).text for s in others] == [hf_greedy(model, tok, p, 12) for p in PROMPTS[1:]]
    wait_idle(engine)
    assert engine.stats().requests_aborted == 1
    engine.abort(victim.id)  # finished or unknown ids are ignored
    engine.abort(10**9)
    assert engine.submit(ids(tok, PROMPTS[0]), SamplingParams(max_tokens=3)).future.result(timeout=30).output_tokens == 3


def test_cancelled_future_aborts_and_resolving_it_is_a_no_op(varied, make_engine):
    model, tok = varied
    engine = make_engine(max_batch_size=2)
    engine.eos_ids = frozenset()
    long = engine.submit(ids(tok, PROMPTS[2]), SamplingParams(max_tokens=200))
    while not long.output_ids:  # decoding has started
        threading.Event().wait(0.01)
    assert long.future.cancel()
    wait_idle(engine)  # the engine noticed at its next step, did not crash setting a result on a cancelled future
    assert engine.alive and long.status.value == "finished" and len(long.output_ids) < 200
    assert engine.stats().requests_aborted == 1
    r = engine.submit(ids(tok, PROMPTS[1]), SamplingParams(max_tokens=8)).future.result(timeout=30)
    assert r.text == hf_greedy(model, tok, PROMPTS[1], 8)


def test_asyncio_cancellation_aborts_the_request(varied, make_engine):
    model, tok = varied
    engine = make_engine()
    engine.eos_ids = frozenset()

    async def main():
        seq = engine.submit(ids(tok, PROMPTS[0]), SamplingParams(max_tokens=200))
        task = asyncio.ensure_future(asyncio.wrap_future(seq.future))
        while not seq.output_ids:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return seq

    seq = asyncio.run(main())
    wait_idle(engine)
    assert seq.future.cancelled() and len(seq.output_ids) < 200 and engine.stats().requests_aborted == 1


@pytest.mark.parametrize("stage", ["admission", "prefill", "decode", "sampling", "detokenize", "nan_logits"])
def test_a_fault_in_one_request_fails_it_alone(varied, make_engine, stage):
    model, tok = varied
    engine = make_engine()
    victim_prompt = PROMPTS[3]
    fault = engine.faults.inject(stage, match=lambda seq: seq.prompt_ids == ids(tok, victim_prompt))
    seqs = [engine.submit(ids(tok, p), SamplingParams(max_tokens=10)) for p in PROMPTS]
    for p, seq in zip(PROMPTS, seqs):
        if p == victim_prompt:
            with pytest.raises(RequestFailedError) as info:
                seq.future.result(timeout=30)
            expected = {"nan_logits": "sampling"}.get(stage, stage)
            assert info.value.stage == expected and info.value.request_id == seq.id
        else:
            assert seq.future.result(timeout=30).text == hf_greedy(model, tok, p, 10)
    assert fault.fired >= 1 and engine.alive
    assert engine.stats().errors == 1
    wait_idle(engine)
    engine.prefix.check()


def test_a_transient_forward_fault_is_retried_and_costs_nothing(varied, make_engine):
    model, tok = varied
    engine = make_engine()
    engine.faults.inject("decode", times=1)
    results = [s.future.result(timeout=30) for s in [engine.submit(ids(tok, p), SamplingParams(max_tokens=8))
                                                     for p in PROMPTS]]
    assert [r.text for r in results] == [hf_greedy(model, tok, p, 8) for p in PROMPTS]
    assert engine.stats().forward_faults == 1 and engine.stats().errors == 0


def test_a_whole_model_fault_stops_the_engine_and_frees_its_memory(varied, make_engine):
    model, tok = varied
    engine = make_engine()
    engine.faults.inject("decode")  # every decode of every request
    futures = []
    for p in PROMPTS:
        try:
            futures.append(engine.submit(ids(tok, p), SamplingParams(max_tokens=8)).future)
        except EngineDeadError as exc:  # dead before this submit: a busy machine let two requests fail alone first
            futures.append(concurrent.futures.Future())
            futures[-1].set_exception(exc)
    errors = []
    for future in futures:
        with pytest.raises((EngineDeadError, RequestFailedError)) as caught:
            future.result(timeout=30)
        assert "injected decode fault" in f"{caught.value} {caught.value.__cause__}"
        errors.append(caught.value)
    # One request failing alone could be its own fault; a second distinct one proves the model broken. So when the
    # first request reaches decode alone (its batch-mates not submitted yet, on a busy machine) it alone fails typed,
    # and every other waiter learns that the engine died.
    assert sum(isinstance(e, RequestFailedError) for e in errors) <= 1
    assert sum(isinstance(e, EngineDeadError) for e in errors) >= len(PROMPTS) - 1
    assert not engine.alive and engine.kv.nbytes == 0 and engine.prefix.nbytes == 0


def test_a_request_failing_alone_is_its_own_fault_until_a_second_one_proves_the_model_broken(varied, make_engine):
    model, tok = varied
    engine = make_engine()
    engine.faults.inject("decode")
    first = engine.submit(ids(tok, PROMPTS[0]), SamplingParams(max_tokens=8))
    with pytest.raises(RequestFailedError, match="injected decode fault"):
        first.future.result(timeout=30)
    assert engine.alive  # one request's fault costs only that request
    for prompt in PROMPTS[1:]:
        # the second request to fail alone kills the engine: callers get EngineDeadError from their future, or from
        # submit itself once the engine is dead (the first of these can die before the next is submitted)
        with pytest.raises(EngineDeadError) as caught:
            engine.submit(ids(tok, prompt), SamplingParams(max_tokens=8)).future.result(timeout=30)
        assert "injected decode fault" in f"{caught.value} {caught.value.__cause__}"
    assert not engine.alive and engine.kv.nbytes == 0


@pytest.mark.parametrize("bad", [
    dict(prompt=[]), dict(prompt=[10**6]), dict(prompt=[-1]), dict(max_tokens=0), dict(temperature=float("nan")),
    dict(top_p=0.0), dict(top_k=-1), dict(seed=-3), dict(logprobs=21), dict(stop=["x"]), dict(max_tokens=True),
])
def test_bad_requests_are_refused_at_submit_with_a_typed_error(varied, make_engine, bad):
    model, tok = varied
    engine = make_engine()
    prompt = bad.pop("prompt", ids(tok, "hello"))
    with pytest.raises(InvalidRequestError):
        engine.submit(prompt, SamplingParams(**bad))
    assert engine.submit(ids(tok, "hello"), SamplingParams(max_tokens=2)).future.result(timeout=30).output_tokens == 2


def test_oom_caps_the_slots_then_grows_them_back(varied, make_engine):
    """OOM whenever more than two sequences decode: the cap settles at two (no livelock, every request completes,
    outputs unchanged); once the pressure is gone the cap and the prefill budget grow back to the configured size."""
    model, tok = varied
    engine = make_engine(max_prefill_tokens=64)
    oom = engine.faults.inject("decode", min_batch=3, error=lambda: torch.OutOfMemoryError("injected"))
    prefill_oom = engine.faults.inject("prefill", times=2, error=lambda: torch.OutOfMemoryError("injected"))
    results = [s.future.result(timeout=120) for s in [engine.submit(ids(tok, p), SamplingParams(max_tokens=16))
                                                      for p in PROMPTS]]
    assert [r.text for r in results] == [hf_greedy(model, tok, p, 16) for p in PROMPTS]
    assert prefill_oom.fired == 2 and oom.fired >= 1
    stats = engine.stats()
    assert stats.slot_cap <= 2 < engine.kv.num_slots
    engine.faults.clear()
    for _ in range(40):  # steady work without pressure (~60 steps a round): capacity comes back
        [s.future.result(timeout=60) for s in [engine.submit(ids(tok, p), SamplingParams(max_tokens=60))
                                               for p in PROMPTS]]
        if engine.scheduler.slot_cap == engine.kv.num_slots and engine.scheduler.max_prefill_tokens == 64:
            break
    assert engine.scheduler.slot_cap == engine.kv.num_slots and engine.scheduler.max_prefill_tokens == 64


def test_prefix_cache_evicts_leaves_first_and_matches_tokens_not_hashes():
    kv = SlotKVCache(1, 2, 1, 64, 4, torch.float32, "cpu")
    cache = PrefixCache(kv, block_size=4, num_blocks=4)
    chain = list(range(12))  # three blocks: a root, a middle and a leaf
    kv.kv[:, :, 0, :, :12] = torch.arange(12.0)[None, None, None, :, None]
    cache.store_from(cache.block_hashes(chain, None), chain, slot=0)
    other = [100, 101, 102, 103]
    cache.store_from(cache.block_hashes(other, None), other, slot=0)
    newest = [200, 201, 202, 203]
    cache.store_from(cache.block_hashes(newest, None), newest, slot=0)  # full: one leaf goes, never a parent
    cache.check()
    assert cache.cached_blocks(cache.block_hashes(chain, None), chain) == 2  # the chain lost its leaf, kept its root
    # a forged entry under the right hash but with other tokens is a miss, not someone else's K/V
    hashes = cache.block_hashes(chain, None)
    cache._blocks[hashes[0]].tokens = (9, 9, 9, 9)
    assert cache.cached_blocks(hashes, chain) == 0
    assert cache.load_into(hashes, chain, slot=1) == 0


def test_logprobs_greedy_are_exact_and_sampled_come_from_the_sampled_distribution(varied, make_engine):
    model, tok = varied
    engine = make_engine()
    prompt = ids(tok, PROMPTS[1])
    greedy = engine.submit(prompt, SamplingParams(max_tokens=6, logprobs=3)).future.result(timeout=30)
    out = model.generate(torch.tensor([prompt]), max_new_tokens=6, do_sample=False, eos_token_id=None,
                         pad_token_id=tok.pad_token_id, output_logits=True, return_dict_in_generate=True)
    for t, choice in enumerate(greedy.logprobs):
        ref = torch.log_softmax(out.logits[t][0].float(), -1)
        assert choice.token == greedy.output_ids[t] and choice.logprob == pytest.approx(ref[choice.token].item(), abs=1e-5)
        assert [j for j, _ in choice.top] == ref.topk(3).indices.tolist()
    sampled = engine.submit(prompt, SamplingParams(max_tokens=6, temperature=0.7, top_k=5, seed=1, logprobs=8))
    for choice in sampled.future.result(timeout=30).logprobs:
        assert len(choice.top) <= 5  # tokens cut by top-k have probability 0: never listed
        probs = torch.tensor([lp for _, lp in choice.top]).exp()
        assert probs.sum().item() == pytest.approx(1.0, abs=1e-5)  # the whole (filtered) distribution is there
        assert choice.logprob == pytest.approx(dict(choice.top)[choice.token], abs=1e-6)
