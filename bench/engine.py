"""Benchmark: compound's continuous-batching engine vs a naive DSPy wrapper (one `generate` per request behind a lock).

Both serve the same model to DSPy through `dspy.LM(engine=...)` and run side by side on the same requests.

    python bench/engine.py --quick      # CPU, tiny models, < 1 minute; last line is the headline ratio
    python bench/engine.py --gpu        # SmolLM2-135M and Qwen2.5-0.5B shapes (random weights) on CUDA

Workloads:
  predict  `dspy.Predict("question -> answer")` on a tiny model trained for ChatAdapter's format (short answers,
           ~160-token prompts that share a prefix: what DSPy programs send).
  decode   fixed-length generation (64 tokens) from a random model: raw decode throughput.
  abort    the cost of abandoned calls: 16 requests alone vs the same 16 beside 16 long ones that their callers
           cancel after the first token (a naive wrapper would decode those to the end under its lock).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import dspy
import torch
from dspy.lm15 import Message, Request, Response, TextPart, Usage

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import compound as cp  # noqa: E402
from compound.lm.prompt import prompt_ids, render_prompt  # noqa: E402
from compound.lm.dspy_lm import _system_text  # noqa: E402


class NaiveGenerateEngine:
    """What a simple wrapper does: render the chat, call `model.generate` once per request, under a lock."""

    def __init__(self, model, tokenizer, cpu_threads: int):
        self.model, self.tokenizer, self.lock = model, tokenizer, threading.Lock()
        self.device = next(model.parameters()).device
        self.cpu_threads = cpu_threads  # same torch threads as the engine: a fair comparison

    def complete(self, request: Request) -> Response:
        messages = [{"role": m.role, "content": m.text or ""} for m in request.messages]
        ids = prompt_ids(self.tokenizer, render_prompt(self.tokenizer, _system_text(request.system), messages))
        c = request.config
        with self.lock, torch.inference_mode():
            if self.device.type == "cpu":
                torch.set_num_threads(self.cpu_threads)
            out = self.model.generate(
                torch.tensor([ids], device=self.device), max_new_tokens=c.max_tokens or 512, do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id,
            )
        new = out[0, len(ids):].tolist()
        if new and new[-1] == self.tokenizer.eos_token_id:
            new = new[:-1]
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        for stop in c.stop or ():
            text = text.split(stop)[0]
        return Response(id=None, model=request.model, message=Message.assistant(TextPart(text)),
                        finish_reason="stop", usage=Usage(input_tokens=len(ids), output_tokens=len(new)))

    def close(self):
        pass


def run(lm, calls, threads: int, repeats: int = 3) -> dict:
    """Run `calls` (each a function of the LM) on `threads` worker threads, best of `repeats` (the machine may be
    shared); tokens/s from DSPy's own usage records."""
    best = None
    for _ in range(repeats):
        lm.history.clear()
        start = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda call: call(lm), calls))
        wall = time.perf_counter() - start
        tokens = sum(e["usage"].get("completion_tokens", 0) for e in lm.history)
        if best is None or tokens / wall > best["tok_per_s"]:
            best = {"requests": len(calls), "tokens": tokens, "seconds": round(wall, 3),
                    "tok_per_s": round(tokens / wall, 1), "req_per_s": round(len(calls) / wall, 1)}
    return best


def compare(workload, model, tokenizer, calls_for, concurrency, naive_max_requests, lm_kwargs, out):
    """Engine and naive wrapper side by side at each concurrency; returns {threads: ratio}."""
    name = f"bench-{workload}-{id(model)}"
    engine_lm = cp.LM(model, tokenizer=tokenizer, name=name, cache=False, **lm_kwargs)
    threads = cp.lm.engine_of(engine_lm).config.cpu_threads
    naive_lm = dspy.LM(f"local/{name}-naive", engine=NaiveGenerateEngine(model, tokenizer, threads), cache=False,
                       **lm_kwargs)
    ratios, req_ratios = {}, {}
    for lm in (engine_lm, naive_lm):  # warm-up: first-call allocations and caches
        run(lm, calls_for(2), 2, repeats=1)
    for n in concurrency:
        requests = max(6 * n, 24)  # several rounds per thread: steady state, not ramp-up
        before = cp.lm.engine_of(engine_lm).stats()
        eng = run(engine_lm, calls_for(requests), n)
        naive = run(naive_lm, calls_for(min(requests, naive_max_requests)), n)
        ratios[n] = eng["tok_per_s"] / naive["tok_per_s"]
        # the naive wrapper decodes past stop strings up to EOS, so requests/s is the fairer DSPy-level figure
        req_ratios[n] = eng["req_per_s"] / naive["req_per_s"]
        after = cp.lm.engine_of(engine_lm).stats()
        hist = {k: v - before.batch_size_hist.get(k, 0) for k, v in after.batch_size_hist.items()}
        steps = sum(hist.values())
        out(workload=workload, threads=n, engine=eng, naive=naive, ratio=round(ratios[n], 2),
            requests_ratio=round(req_ratios[n], 2),
            mean_decode_batch=round(sum(int(k) * v for k, v in hist.items()) / max(steps, 1), 1),
            prefill_saved=f"{after.prefill_tokens_saved - before.prefill_tokens_saved}/"
                          f"{after.prompt_tokens - before.prompt_tokens}")
    return ratios, req_ratios


def predict_calls(n):
    from compound.testing import CAPITALS

    program = dspy.Predict("question -> answer")
    countries = list(CAPITALS)
    return [lambda lm, c=countries[i % len(countries)]: program(question=f"What is the capital of {c}?", lm=lm)
            for i in range(n)]


def decode_calls(tokenizer, prompt_len, new_tokens, shared=0.75):
    """Raw requests through DSPy's LM layer: a shared prefix (a predictor's instructions) plus a unique tail."""
    vocab = len(tokenizer)
    gen = torch.Generator().manual_seed(0)
    head = " ".join(f"w{int(i)}" for i in torch.randint(10, vocab, (int(prompt_len * shared),), generator=gen))

    def calls(n):
        out = []
        for i in range(n):
            tail = " ".join(f"w{int(t)}" for t in torch.randint(10, vocab, (prompt_len - int(prompt_len * shared),),
                                                                   generator=gen))
            req = (head + " " + tail, new_tokens)
            out.append(lambda lm, req=req: lm(Request(model=lm.model, messages=(Message.user(req[0]),),
                                                       config=dspy.lm15.Config(max_tokens=req[1], stop=()))))
        return out

    return calls


def abort_cost(model, tokenizer, out, repeats: int = 3) -> float:
    """Wall time of 16 requests beside 16 cancelled long ones, over the 16 alone (best of `repeats`, interleaved)."""
    engine = cp.Engine(model, tokenizer, cp.EngineConfig(max_batch_size=32, max_seq_len=640))
    engine.eos_ids = frozenset()  # fixed lengths: nothing ends early
    prompts = [tokenizer(f"w{10 + i} w{20 + i} w{30 + i} w{40 + i}")["input_ids"] for i in range(16)]
    short, long = cp.SamplingParams(max_tokens=32), cp.SamplingParams(max_tokens=512)

    def timed(with_aborts: bool) -> float:
        start = time.perf_counter()
        doomed = [engine.submit(p, long) for p in prompts] if with_aborts else []
        kept = [engine.submit(p, short) for p in prompts]
        for seq in doomed:  # the caller gives up once its call has started decoding
            while not seq.output_ids:
                time.sleep(0.001)
            seq.future.cancel()
        for seq in kept:
            seq.future.result()
        return time.perf_counter() - start

    try:
        timed(True)  # warm-up
        alone = min(timed(False) for _ in range(repeats))
        beside = min(timed(True) for _ in range(repeats))
    finally:
        engine.close()
    out(workload="abort", alone_s=round(alone, 3), beside_cancelled_s=round(beside, 3), ratio=round(beside / alone, 2))
    return beside / alone


def random_model(kind: str, device: str, dtype, smoke: bool):
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    from compound.testing import word_tokenizer

    shapes = {
        "tiny-llama": (LlamaForCausalLM, LlamaConfig, dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                       num_key_value_heads=2, intermediate_size=256, vocab_size=2048, initializer_range=0.3)),
        "smollm2-135m": (LlamaForCausalLM, LlamaConfig, dict(hidden_size=576, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, intermediate_size=1536, vocab_size=49152)),
        "qwen2.5-0.5b": (Qwen2ForCausalLM, Qwen2Config, dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, intermediate_size=4864, vocab_size=151936)),
    }
    cls, cfg_cls, kw = shapes[kind]
    if smoke and kind != "tiny-llama":
        kw = {**kw, "num_hidden_layers": 2, "vocab_size": 4096}
    tokenizer = word_tokenizer(kw["vocab_size"])
    config = cfg_cls(**kw, max_position_embeddings=4096, tie_word_embeddings=True, pad_token_id=0,
                     eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    return cls(config).to(device, dtype).eval(), tokenizer


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="CPU, tiny models, under a minute")
    ap.add_argument("--gpu", action="store_true", help="real small-model shapes on CUDA")
    ap.add_argument("--smoke", action="store_true", help="with --gpu: 2-layer shapes on the CPU, to check the script")
    args = ap.parse_args(argv)
    dspy.disable_logging()

    def out(**kw):
        print(json.dumps(kw), flush=True)

    if args.gpu:
        device = "cpu" if args.smoke else "cuda"
        dtype = torch.float32 if args.smoke else torch.bfloat16
        concurrency = (1, 8) if args.smoke else (1, 8, 32, 64)
        headline = None
        for kind in ("smollm2-135m", "qwen2.5-0.5b"):
            model, tok = random_model(kind, device, dtype, args.smoke)
            ratios, _ = compare(f"decode-{kind}", model, tok, decode_calls(tok, 128, 64), concurrency,
                             naive_max_requests=8 if args.smoke else 16, lm_kwargs={"max_tokens": 64}, out=out)
            headline = f"{kind} engine/naive at {concurrency[-1]} threads: {ratios[concurrency[-1]]:.1f}x"
        print(headline)
        return

    concurrency = (1, 8, 32)
    from compound.testing import capitals_llama

    model, tok = random_model("tiny-llama", "cpu", torch.float32, smoke=False)
    compare("decode-tiny", model, tok, decode_calls(tok, 96, 32), concurrency, naive_max_requests=16,
            lm_kwargs={"max_tokens": 32}, out=out)
    abort_cost(model, tok, out)
    model, tok = capitals_llama()
    ratios, req_ratios = compare("predict", model, tok, predict_calls, concurrency, naive_max_requests=48,
                                 lm_kwargs={"max_tokens": 64}, out=out)
    print(f"engine/naive at 8 threads: {ratios[8]:.1f}x tok/s, {req_ratios[8]:.1f}x requests/s")


if __name__ == "__main__":
    main()
