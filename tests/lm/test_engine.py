"""The engine against HF `generate` on tiny real models: batching, prefix reuse, sampling, stops, failures."""

import asyncio
import threading

import pytest
import torch
from compound.lm import ContextLengthError

from compound.lm import EngineClosedError, EngineDeadError, SamplingParams

PROMPTS = [
    "hello world",
    "What is the capital of France?",
    "the quick brown fox jumps over the lazy dog " * 3,
    "1 2 3",
    "Respond with the corresponding output fields",
    "yes no maybe",
]


def hf_greedy(model, tok, prompt, n):
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    out = model.generate(ids, max_new_tokens=n, do_sample=False, eos_token_id=None, pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


def ids(tok, prompt):
    return tok(prompt)["input_ids"]


def run_all(engine, tok, prompts, params):
    seqs = [engine.submit(ids(tok, p), params) for p in prompts]
    return [s.future.result(timeout=60) for s in seqs]


def test_greedy_alone_equals_hf_generate(varied, make_engine):
    model, tok = varied
    engine = make_engine()
    for p in PROMPTS:
        r = engine.submit(ids(tok, p), SamplingParams(max_tokens=24)).future.result(timeout=60)
        assert r.text == hf_greedy(model, tok, p, 24)
        assert (r.finish_reason, r.output_tokens) == ("length", 24)


@pytest.mark.parametrize("config", [{}, {"max_batch_size": 3}, {"max_prefill_tokens": 16}, {"prefix_cache_tokens": 0}])
def test_batched_greedy_equals_alone(varied, make_engine, config):
    """More requests than slots, chunked prefill, prefix reuse on and off: padding and positions stay right."""
    model, tok = varied
    refs = {p: hf_greedy(model, tok, p, 20) for p in PROMPTS}
    results = run_all(make_engine(**config), tok, PROMPTS * 3, SamplingParams(max_tokens=20))
    assert [r.text for r in results] == [refs[p] for p in PROMPTS * 3]


def test_prefix_reuse_skips_shared_prompt_blocks(varied, make_engine):
    model, tok = varied
    engine = make_engine()
    shared = "Your input fields are: `question` (str). Your output fields are: `answer` (str). " * 2
    prompts = [shared + f"question {i}?" for i in range(6)]
    results = run_all(engine, tok, prompts, SamplingParams(max_tokens=8))
    assert [r.text for r in results] == [hf_greedy(model, tok, p, 8) for p in prompts]
    assert sum(r.prefix_hit_tokens for r in results[1:]) >= 5 * 16
    stats = engine.stats()
    assert stats.prefill_tokens_saved == sum(r.prefix_hit_tokens for r in results)
    assert stats.prefill_tokens_computed + stats.prefill_tokens_saved >= stats.prompt_tokens - len(prompts)


def test_sixteen_threads_share_batches(varied, make_engine):
    model, tok = varied
    engine = make_engine(max_batch_size=16)
    out, barrier = {}, threading.Barrier(16)

    def worker(i):
        barrier.wait()
        out[i] = engine.submit(ids(tok, PROMPTS[i % 6]), SamplingParams(max_tokens=16)).future.result(timeout=60)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    refs = [hf_greedy(model, tok, p, 16) for p in PROMPTS]
    assert [out[i].text for i in range(16)] == [refs[i % 6] for i in range(16)]
    assert max(int(k) for k in engine.stats().batch_size_hist) > 1


def test_sixteen_asyncio_tasks(varied, make_engine):
    model, tok = varied
    engine = make_engine(max_batch_size=16)

    async def main():
        futures = [asyncio.wrap_future(engine.submit(ids(tok, PROMPTS[i % 6]), SamplingParams(max_tokens=12)).future)
                   for i in range(16)]
        return await asyncio.gather(*futures)

    results = asyncio.run(main())
    refs = [hf_greedy(model, tok, p, 12) for p in PROMPTS]
    assert [r.text for r in results] == [refs[i % 6] for i in range(16)]


def test_stop_string_across_token_boundaries(varied, make_engine):
    model, tok = varied
    engine = make_engine()
    full = hf_greedy(model, tok, PROMPTS[1], 24)
    stop = full[7:12]  # a piece that need not align with token boundaries
    assert len(tok(stop, add_special_tokens=False)["input_ids"]) >= 1
    r = engine.submit(ids(tok, PROMPTS[1]), SamplingParams(max_tokens=24, stop=("@@never@@", stop))).future.result()
    assert r.finish_reason == "stop"
    assert r.text == full[: full.find(stop)]
    assert r.output_tokens < 24


def test_max_tokens_and_context_limit(varied, make_engine):
    model, tok = varied
    engine = make_engine(max_seq_len=64)
    r = engine.submit(ids(tok, PROMPTS[0]), SamplingParams(max_tokens=3)).future.result()
    assert (r.output_tokens, r.finish_reason) == (3, "length")
    long_prompt = ids(tok, "the quick brown fox " * 40)
    with pytest.raises(ContextLengthError, match="does not fit the context"):
        engine.submit(long_prompt, SamplingParams(max_tokens=3))
    near = long_prompt[:60]  # fits, but prompt + max_tokens does not: output is clamped to the context
    r = engine.submit(near, SamplingParams(max_tokens=50)).future.result()
    assert (r.output_tokens, r.finish_reason) == (4, "length")


def test_eos_ends_a_sequence(capitals):
    from compound.lm import Engine
    from compound.lm.prompt import prompt_ids, render_prompt

    model, tok = capitals
    engine = Engine(model, tok)
    try:
        import dspy

        msgs = dspy.ChatAdapter().format(dspy.Predict("question -> answer").signature, demos=[],
                                         inputs={"question": "What is the capital of Japan?"})
        text = render_prompt(tok, msgs[0]["content"], msgs[1:])
        r = engine.submit(prompt_ids(tok, text), SamplingParams(max_tokens=100)).future.result()
        assert r.finish_reason == "stop" and r.output_tokens < 100
        assert "Tokyo" in r.text and r.text.rstrip().endswith("[[ ## completed ## ]]")
    finally:
        engine.close()


def test_seeded_sampling_is_reproducible_in_any_batch(varied, make_engine):
    model, tok = varied
    engine = make_engine()
    p = SamplingParams(max_tokens=16, temperature=1.0, top_p=0.9, top_k=50, seed=7)
    alone = engine.submit(ids(tok, PROMPTS[2]), p).future.result().text
    crowd = run_all(engine, tok, [PROMPTS[2]] + PROMPTS, p)  # same seed everywhere, other prompts around it
    assert crowd[0].text == alone
    other = engine.submit(ids(tok, PROMPTS[2]), SamplingParams(max_tokens=16, temperature=1.0, seed=8))
    assert other.future.result().text != alone
    greedy = engine.submit(ids(tok, PROMPTS[2]), SamplingParams(max_tokens=16, temperature=1.0, top_k=1))
    assert greedy.future.result().text == hf_greedy(model, tok, PROMPTS[2], 16)


def test_streaming_deltas_add_up_to_the_result(varied, make_engine):
    model, tok = varied
    engine = make_engine()
    seq = engine.submit(ids(tok, PROMPTS[1]), SamplingParams(max_tokens=20), stream=True)
    deltas = []
    while (d := seq.stream.get(timeout=60)) is not None:
        deltas.append(d)
    assert len(deltas) > 1
    assert "".join(deltas) == seq.future.result().text == hf_greedy(model, tok, PROMPTS[1], 20)


def test_oom_shrinks_the_batch_and_every_request_survives(varied, make_engine):
    """A CUDA OOM in a big batch preempts a sequence and retries; outputs equal the un-preempted run."""
    model, tok = varied
    engine = make_engine()
    real_forward, fired = engine.runner.forward, []

    def forward_with_oom(seqs, chunks):
        if len(seqs) > 2 and len(fired) < 3:
            fired.append(len(seqs))
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return real_forward(seqs, chunks)

    engine.runner.forward = forward_with_oom
    results = run_all(engine, tok, PROMPTS, SamplingParams(max_tokens=16))
    assert fired and engine.stats().oom_retries == len(fired)
    assert [r.text for r in results] == [hf_greedy(model, tok, p, 16) for p in PROMPTS]


def test_scheduler_crash_fails_every_pending_request(varied, make_engine):
    model, tok = varied
    engine = make_engine()
    real_forward, calls, all_submitted = engine.runner.forward, [], threading.Event()

    def forward_then_crash(seqs, chunks):
        calls.append(1)
        if len(calls) > 3 and all_submitted.is_set():  # crash mid-run, once every request is in
            raise RuntimeError("device-side assert (injected)")
        return real_forward(seqs, chunks)

    engine.runner.forward = forward_then_crash
    seqs = [engine.submit(ids(tok, p), SamplingParams(max_tokens=50)) for p in PROMPTS]
    all_submitted.set()
    for seq in seqs:
        with pytest.raises(EngineDeadError, match="device-side assert") as info:
            seq.future.result(timeout=30)
        assert isinstance(info.value.__cause__, RuntimeError)
    with pytest.raises(EngineDeadError):
        engine.submit(ids(tok, PROMPTS[0]), SamplingParams())
    assert not engine.alive


def test_close_fails_pending_requests_cleanly(varied, make_engine):
    model, tok = varied
    engine = make_engine(max_batch_size=1)
    seqs = [engine.submit(ids(tok, p), SamplingParams(max_tokens=200)) for p in PROMPTS]
    engine.close()
    outcomes = []
    for seq in seqs:
        try:
            outcomes.append(seq.future.result(timeout=30).finish_reason)
        except EngineClosedError:
            outcomes.append("closed")
    assert "closed" in outcomes
    with pytest.raises(EngineClosedError):
        engine.submit(ids(tok, PROMPTS[0]), SamplingParams())


def test_long_newcomer_prefill_does_not_stall_running_decodes(varied, make_engine):
    """Driven step by step: a 200-token prompt is prefilled 16 tokens a step while a running sequence decodes on."""
    model, tok = varied
    engine = make_engine(max_prefill_tokens=16, start=False)  # no scheduler thread: this test calls step() itself
    running = engine.new_sequence(ids(tok, PROMPTS[0]), SamplingParams(max_tokens=40))
    engine.scheduler.add(running)
    engine.step()
    long_prompt = ids(tok, "the quick brown fox jumps over the lazy dog " * 12)[:200]
    newcomer = engine.new_sequence(long_prompt, SamplingParams(max_tokens=4))
    engine.scheduler.add(newcomer)
    progress = []
    while newcomer.num_computed < len(long_prompt):
        before = len(running.output_ids)
        engine.step()
        progress.append(len(running.output_ids) - before)
    assert len(progress) >= 200 // 16  # the prompt took many steps ...
    assert all(p == 1 for p in progress)  # ... and the running sequence got a token in every one of them
