"""Benchmark: compound's adapter trainer vs a plain PEFT + `transformers.Trainer` loop, same data and settings.

Both train the same LoRA (r=16 on every linear layer, lr 2e-3, batch 32, AdamW, grad-norm clipping) on the same
chat examples, side by side in one process: rounds alternate between the two, and each side's best round counts (the
machine may be shared). Reported: tokens/s (real prompt + answer tokens trained per second, padding excluded) and,
on CUDA, peak memory (`torch.cuda.max_memory_allocated`); `--memory` adds the CPU peak resident memory of each side
measured in its own child process.

    python bench/finetune.py --quick     # CPU, < 1 minute; the last line is the headline ratio
    python bench/finetune.py             # CPU, more rounds, and the shared-prefix ablation
    python bench/finetune.py --gpu       # CUDA: SmolLM2-135M and Qwen2.5-0.5B shapes (random weights), bf16

Workloads (the data a DSPy program produces):
  convert  zoo-small (2M parameters) on the zoo's convert task in CompactAdapter's format: ~22 tokens per example
  chat     a predictor's ChatAdapter prompts with 2 demos: ~230 tokens, ~90% of them shared by every example
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import dspy
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import compound as cp  # noqa: E402
from compound.tune.config import TrainConfig, method_config  # noqa: E402
from compound.tune.data import collate, encode_chat, epoch_batches, shared_fraction  # noqa: E402
from compound.tune.trainer import AdapterTrainer, lr_at  # noqa: E402

LR, BATCH = 2e-3, 32


# ---- data -------------------------------------------------------------------------------------------------------------
def convert_chats(n: int) -> list[list[dict]]:
    task = cp.zoo.tasks["convert"]
    adapter = cp.CompactAdapter()
    return [adapter.format_finetune_data(task.signature, [], {"quantity": r["quantity"]}, {"value": r["value"]})
            ["messages"] for r in task.rows("train")[:n]]


def chat_adapter_chats(n: int) -> list[list[dict]]:
    from compound.testing import CAPITALS

    signature = dspy.Signature("question -> answer", "Answer the question with the name of a city.")
    countries = list(CAPITALS)
    demos = [dspy.Example(question=f"What is the capital of {c}?", answer=CAPITALS[c]) for c in countries[:2]]
    adapter = dspy.ChatAdapter()
    return [adapter.format_finetune_data(signature, demos, {"question": f"What is the capital of {c}? ({i})"},
                                         {"answer": CAPITALS[c]})["messages"]
            for i, c in ((i, countries[i % len(countries)]) for i in range(n))]


def model_for(workload: str, device: str, dtype):
    """(served LM, loaded model) for a workload: the zoo model, or a random Llama of a real model's shape."""
    if workload == "convert":
        lm = cp.zoo.lm("small", device=device)
        return lm, cp.adapters.loaded_model_of(lm)
    from transformers import LlamaConfig, LlamaForCausalLM

    from compound.testing import tiny_tokenizer, word_tokenizer

    shapes = {  # hidden, layers, heads, kv heads, mlp, vocab
        "chat": (256, 4, 4, 4, 768, None),
        "smollm2-135m": (576, 30, 9, 3, 1536, 49152),
        "qwen2.5-0.5b": (896, 24, 14, 2, 4864, 151936),
    }
    hidden, layers, heads, kv, mlp, vocab = shapes[workload]
    tok = tiny_tokenizer(1024, tuple(m["content"] for c in chat_adapter_chats(8) for m in c)) if vocab is None \
        else word_tokenizer(vocab)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                         num_key_value_heads=kv, intermediate_size=mlp, max_position_embeddings=2048,
                         tie_word_embeddings=True, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(device, dtype).eval()
    lm = cp.LM(model, tokenizer=tok, name=f"bench-{workload}", device=device, cache=False)
    return lm, cp.adapters.loaded_model_of(lm)


# ---- the two trainers -----------------------------------------------------------------------------------------------
class Compound:
    """compound's AdapterTrainer fed by its own data pipeline (length buckets, shared prefix, answer-only logits)."""

    label = "compound"

    def __init__(self, loaded, encoded, shared_prefix: bool = True):
        self.config = TrainConfig(batch_size=BATCH, lr=LR, shared_prefix=shared_prefix, warmup_steps=0)
        self.trainer = AdapterTrainer(loaded, method_config("lora"), self.config,
                                      shared_fraction=shared_fraction(encoded, BATCH))
        self.encoded, self.pad = encoded, loaded.tokenizer.pad_token_id or 0
        self.batches = [b for e in range(100) for b in epoch_batches([len(x) for x in encoded], BATCH, 0, e)]
        self.step = 0

    def run(self, steps: int) -> tuple[float, int]:
        """Train `steps` steps; (seconds, real tokens)."""
        tokens, t0 = 0, time.perf_counter()
        for _ in range(steps):
            batch = collate([self.encoded[i] for i in self.batches[self.step]], self.pad, self.trainer.share_prefix)
            self.trainer.step(batch, lr_at(self.step, 0.0, self.config, LR))
            self.step += 1
            tokens += batch.tokens
        _sync()
        return time.perf_counter() - t0, tokens


class PlainTrainer:
    """What the anchors' docs show: PEFT's get_peft_model + transformers.Trainer with a padding collator, labels
    masked to the answer (the same assistant-only loss), same optimizer settings."""

    label = "peft+Trainer"

    def __init__(self, loaded, encoded, device: str):
        import copy

        from peft import get_peft_model
        from transformers import DataCollatorForSeq2Seq, PrinterCallback, Trainer, TrainerCallback, TrainingArguments

        torch.manual_seed(0)
        base = copy.deepcopy(loaded.model).train()
        cuda = device == "cuda"
        if cuda:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.model = get_peft_model(base, method_config("lora"))
        rows = [{"input_ids": e.prompt + e.answer, "attention_mask": [1] * len(e),
                 "labels": [-100] * len(e.prompt) + e.answer} for e in encoded]
        collator = DataCollatorForSeq2Seq(loaded.tokenizer, padding=True, label_pad_token_id=-100)
        self.tokens = 0

        def count(features):
            self.tokens += sum(len(f["input_ids"]) for f in features)
            return collator(features)

        outer = self

        class Clock(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                if state.global_step == outer.first:  # the first step pays the dataloader's and optimizer's set-up
                    _sync()
                    outer.t0, outer.tokens_at_t0 = time.perf_counter(), outer.tokens

        self.args = dict(output_dir=tempfile.mkdtemp(prefix="bench-finetune-"), per_device_train_batch_size=BATCH,
                         learning_rate=LR, lr_scheduler_type="constant", max_grad_norm=1.0, weight_decay=0.0,
                         logging_strategy="no", save_strategy="no", report_to=[], disable_tqdm=True, seed=0,
                         use_cpu=not cuda, bf16=cuda and torch.cuda.is_bf16_supported(), dataloader_num_workers=0,
                         remove_unused_columns=False)
        def make(steps: int) -> Trainer:
            trainer = Trainer(model=self.model, args=TrainingArguments(**self.args, max_steps=steps),
                              train_dataset=rows, data_collator=count, callbacks=[Clock()])
            trainer.remove_callback(PrinterCallback)  # it prints the final metrics dict
            return trainer

        self._make = make
        self.first = 1

    def run(self, steps: int) -> tuple[float, int]:
        trainer = self._make(steps + 1)  # a fresh Trainer per round: time steps 2..steps+1 (set-up excluded)
        trainer.train()
        _sync()
        # the collator also ran for the untimed first step's batch: count from the timed steps only
        return time.perf_counter() - self.t0, self.tokens - self.tokens_at_t0


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def side_by_side(workload: str, device: str, dtype, rounds: int, steps: int, n_examples: int, out,
                 ablation: bool = False) -> dict:
    lm, loaded = model_for(workload, device, dtype)
    chats = (convert_chats if workload == "convert" else chat_adapter_chats)(n_examples)
    eos = frozenset(loaded.engine.eos_ids)
    encoded = [encode_chat(loaded.tokenizer, c, eos) for c in chats]
    sides = [Compound(loaded, encoded), PlainTrainer(loaded, encoded, device)]
    if ablation:
        no_share = Compound(loaded, encoded, shared_prefix=False)
        no_share.label = "compound, no shared prefix"
        sides.append(no_share)
    best, memory = {}, {}
    for side in sides:  # warm-up
        side.run(1)
    for _ in range(rounds):
        for side in sides:
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            seconds, tokens = side.run(steps)
            best[side.label] = max(best.get(side.label, 0.0), tokens / seconds)
            if device == "cuda":
                memory[side.label] = torch.cuda.max_memory_allocated() / 2**20
    mean_len = sum(len(e) for e in encoded) / len(encoded)
    result = {"workload": workload, "device": device, "threads": torch.get_num_threads(), "steps_per_round": steps,
              "rounds": rounds, "mean_tokens": round(mean_len, 1),
              "tokens_per_s": {k: round(v) for k, v in best.items()},
              "ratio": round(best["compound"] / best["peft+Trainer"], 2)}
    if memory:
        result["peak_mib"] = {k: round(v) for k, v in memory.items()}
        result["memory_ratio"] = round(memory["compound"] / memory["peft+Trainer"], 2)
    out(result)
    return result


def child_memory(workload: str, side: str, steps: int) -> float:
    """Peak resident memory (MiB) a side adds while training, in a fresh process."""
    code = (f"import sys, resource; sys.argv=['x']; sys.path.insert(0, {os.path.dirname(__file__)!r}); "
            f"import finetune as f, torch; torch.set_num_threads(1); "
            f"lm, loaded = f.model_for({workload!r}, 'cpu', torch.float32); "
            f"chats = (f.convert_chats if {workload!r} == 'convert' else f.chat_adapter_chats)(512); "
            f"enc = [f.encode_chat(loaded.tokenizer, c, frozenset(loaded.engine.eos_ids)) for c in chats]; "
            f"before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
            f"s = f.Compound(loaded, enc) if {side!r} == 'compound' else f.PlainTrainer(loaded, enc, 'cpu'); "
            f"s.run({steps}); print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="CPU, under a minute")
    ap.add_argument("--gpu", action="store_true", help="real small-model shapes on CUDA, bf16")
    ap.add_argument("--memory", action="store_true", help="CPU: peak resident memory of each side in a child process")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: compound's policy)")
    args = ap.parse_args(argv)
    dspy.disable_logging()

    def out(result):
        print(json.dumps(result), flush=True)

    if args.gpu:
        headline = None
        for workload in ("smollm2-135m", "qwen2.5-0.5b"):
            r = side_by_side(workload, "cuda", torch.bfloat16, rounds=3, steps=10, n_examples=512, out=out)
            headline = (f"{workload} LoRA training, compound vs peft+Trainer: {r['ratio']:.2f}x tokens/s at "
                        f"{r['memory_ratio']:.2f}x peak memory")
        print(headline)
        return

    torch.set_num_threads(args.threads or TrainConfig().cpu_threads())
    rounds, steps = (2, 5) if args.quick else (4, 15)
    results = {w: side_by_side(w, "cpu", torch.float32, rounds, steps if w == "convert" else max(2, steps // 3), 512,
                               out, ablation=not args.quick) for w in ("convert", "chat")}
    if args.memory:
        for workload in ("convert", "chat"):
            mem = {side: round(child_memory(workload, side, steps)) for side in ("compound", "peft+Trainer")}
            out({"workload": workload, "peak_rss_added_mib": mem, "memory_ratio": round(mem["compound"] /
                 max(1, mem["peft+Trainer"]), 2)})
    print(f"compound/peft+Trainer tokens/s on CPU: convert {results['convert']['ratio']:.2f}x, "
          f"ChatAdapter prompts {results['chat']['ratio']:.2f}x")


if __name__ == "__main__":
    main()
