"""Benchmark: one batch mixing 8 LoRA adapters, in compound's engine and through PEFT's `adapter_names` path.

The same 8 random LoRA adapters (r=16 on every linear layer) of the same base model, the same 32 prompts, greedy,
24 new tokens on every row (end-of-sequence ignored on both sides), the same torch threads; rounds alternate between the setups and each keeps its best (the machine may
be shared). Setups:

  compound base / one / mixed   the engine: 32 requests on the base model, on one adapter, or 4 on each of 8 adapters
  peft base / one / mixed       HF `generate` on a PeftModel: adapters disabled, one adapter, `adapter_names` per row

    python bench/multi_lora.py --quick   # CPU, zoo-small, < 1 minute; the last line is the headline
    python bench/multi_lora.py --gpu     # CUDA: SmolLM2-135M shape (random weights), bf16, CUDA graphs, 64 tokens
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
import warnings

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import compound as cp  # noqa: E402
from compound.lm import Engine, EngineConfig, SamplingParams  # noqa: E402
from compound.lm.lora import from_peft, served_adapters  # noqa: E402

ADAPTERS, ROWS = 8, 32


def base_model(gpu: bool, smoke: bool = False):
    if not gpu:
        lm = cp.zoo.lm("small")
        loaded = cp.adapters.loaded_model_of(lm)
        return copy.deepcopy(loaded.model), loaded.tokenizer, [
            cp.zoo.tasks["convert"].rows("test")[i]["quantity"] for i in range(ROWS)]
    from transformers import LlamaConfig, LlamaForCausalLM

    from compound.testing import word_tokenizer

    tok = word_tokenizer(49152)
    config = LlamaConfig(vocab_size=49152, hidden_size=576, num_hidden_layers=2 if smoke else 30,
                         num_attention_heads=9, num_key_value_heads=3, intermediate_size=1536,
                         max_position_embeddings=2048, tie_word_embeddings=True, pad_token_id=0,
                         eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    prompts = [" ".join(f"w{(i * 7 + j * 13) % 40000 + 10}" for j in range(48)) for i in range(ROWS)]
    device, dtype = ("cpu", torch.float32) if smoke else ("cuda", torch.bfloat16)
    return LlamaForCausalLM(config).to(device, dtype).eval(), tok, prompts


def make_adapters(model):
    """8 PEFT LoRA adapters with random (non-zero) weights on copies of `model`: (config dict, tensors) each."""
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict

    out = []
    for seed in range(ADAPTERS):
        torch.manual_seed(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            peft = get_peft_model(copy.deepcopy(model), LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                                                   init_lora_weights=False))
        with torch.no_grad():
            for name, p in peft.named_parameters():
                if "lora_" in name:
                    p.mul_(0.5)
        out.append((peft.peft_config["default"].to_dict(), {k: v.detach().clone() for k, v in
                                                             get_peft_model_state_dict(peft).items()}))
    return out


def peft_with_all(model, adapters):
    from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peft = get_peft_model(copy.deepcopy(model), LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"),
                              adapter_name="a0")
        for i, (config, tensors) in enumerate(adapters):
            if i:
                peft.add_adapter(f"a{i}", LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"))
            set_peft_model_state_dict(peft, tensors, adapter_name=f"a{i}")
    assert isinstance(peft, PeftModel)
    return peft.eval()


def timed(fn) -> tuple[float, int]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    tokens = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0, tokens


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="CPU, under a minute")
    ap.add_argument("--gpu", action="store_true", help="SmolLM2-135M shape on CUDA")
    ap.add_argument("--smoke", action="store_true", help="with --gpu: 2 layers on the CPU, to check the script")
    ap.add_argument("--tokens", type=int, default=24)
    args = ap.parse_args(argv)
    model, tok, prompts = base_model(args.gpu, args.smoke)
    adapters = make_adapters(model)
    names = [f"a{i}" for i in range(ADAPTERS)]
    n_new = 64 if args.gpu and not args.smoke else args.tokens

    # compound: the engine serves the base model object itself; adapters registered by name
    served = served_adapters(model)
    for name, (config, tensors) in zip(names, adapters):
        served.add(from_peft(name, config, tensors, model))
    engine = Engine(model, tok, EngineConfig(max_batch_size=ROWS, max_seq_len=256, prefix_cache_tokens=0), "bench")
    engine.eos_ids = frozenset()  # every row decodes all its tokens, as `generate(eos_token_id=None)` does below
    threads = engine.config.cpu_threads
    ids = [tok(p)["input_ids"] for p in prompts]

    def engine_run(adapter_of_row):
        seqs = [engine.submit(i, SamplingParams(max_tokens=n_new), adapter_of_row(r)) for r, i in enumerate(ids)]
        return sum(s.future.result().output_tokens for s in seqs)

    # PEFT: HF generate on a left-padded batch, adapters chosen per row with adapter_names
    peft = peft_with_all(model, adapters)
    width = max(map(len, ids))
    batch = torch.full((ROWS, width), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(batch)
    for r, i in enumerate(ids):
        batch[r, width - len(i):], mask[r, width - len(i):] = torch.tensor(i), 1
    device = next(model.parameters()).device
    batch, mask = batch.to(device), mask.to(device)

    def peft_run(adapter_names=None, disabled=False):
        if device.type == "cpu":
            torch.set_num_threads(threads)  # the engine's threads: a fair comparison
        gen = dict(input_ids=batch, attention_mask=mask, max_new_tokens=n_new, do_sample=False, eos_token_id=None,
                   pad_token_id=tok.pad_token_id)
        with torch.inference_mode():
            if disabled:
                with peft.disable_adapter():
                    peft.generate(**gen)
            elif adapter_names is not None:
                peft.generate(**gen, adapter_names=adapter_names)
            else:
                peft.set_adapter("a0")
                peft.generate(**gen)
        return ROWS * n_new

    mixed = [names[r % ADAPTERS] for r in range(ROWS)]
    setups = {
        "compound base": lambda: engine_run(lambda r: None),
        "compound one": lambda: engine_run(lambda r: "a0"),
        "compound mixed": lambda: engine_run(lambda r: mixed[r]),
        "peft base": lambda: peft_run(disabled=True),
        "peft one": lambda: peft_run(),
        "peft mixed": lambda: peft_run(adapter_names=mixed),
    }
    for fn in setups.values():  # warm-up: allocations, adapter residency, CUDA graphs
        fn()
    best: dict[str, float] = {}
    for _ in range(1 if args.smoke else 2 if args.quick else 4):
        for label, fn in setups.items():
            seconds, tokens = timed(fn)
            best[label] = max(best.get(label, 0.0), tokens / seconds)
    engine.close()
    result = {"device": str(device), "threads": threads, "rows": ROWS, "adapters": ADAPTERS, "new_tokens": n_new,
              "tok_per_s": {k: round(v) for k, v in best.items()},
              "compound_mixed_vs_peft_mixed": round(best["compound mixed"] / best["peft mixed"], 2),
              "compound_mixed_slowdown_vs_base": round(best["compound base"] / best["compound mixed"], 2),
              "peft_mixed_slowdown_vs_base": round(best["peft base"] / best["peft mixed"], 2)}
    print(json.dumps(result), flush=True)
    print(f"8 adapters in one batch: compound {result['compound_mixed_vs_peft_mixed']:.1f}x PEFT's mixed path, "
          f"{(result['compound_mixed_slowdown_vs_base'] - 1) * 100:.0f}% slower than its base model")


if __name__ == "__main__":
    main()
