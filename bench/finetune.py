"""Benchmark: compound's adapter trainer vs a plain PEFT + `transformers.Trainer` loop, same data and settings.

Both train the same LoRA (r=16 on every linear layer, lr 2e-3, batch 32, AdamW, grad-norm clipping) on the same
chat examples, side by side in one process: rounds alternate between the two, and each side's best round counts (the
machine may be shared). Reported: tokens/s (real prompt + answer tokens trained per second, padding excluded), the
activation memory of a step (bytes autograd saves for the backward pass, weights excluded: what grows with batch and
length, on any device) and, on CUDA, peak memory (`torch.cuda.max_memory_allocated`).

    python bench/finetune.py --quick     # CPU, < 1 minute; the last line is the headline ratio
    python bench/finetune.py             # CPU, more rounds, and the shared-prefix ablation
    python bench/finetune.py --gpu       # CUDA: SmolLM2-135M and Qwen2.5-0.5B shapes (random weights), bf16
    python bench/finetune.py --accuracy 90   # the notebook's question: test-score gain on convert after 90 s each,
                                             # cp.finetune vs the plain PEFT loop (~4 minutes)

Workloads (the data a DSPy program produces):
  convert  zoo-small (2M parameters) on the zoo's convert task in CompactAdapter's format: ~22 tokens per example
  chat     a predictor's ChatAdapter prompts with 2 demos: ~230 tokens, ~90% of them shared by every example
"""

from __future__ import annotations

import argparse
import json
import os
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


def model_for(workload: str, device: str, dtype, smoke: bool = False):
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
    if smoke and vocab is not None:  # --gpu --smoke: the GPU workloads' code path on the CPU, 2 layers
        layers, vocab = 2, 4096
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
class SavedForBackward:
    """Bytes autograd saves for the backward pass during one step (each storage once, parameters excluded)."""

    def __init__(self, model):
        self.params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.peak = 0
        self.start()

    def start(self) -> None:
        self.seen, self.bytes = set(), 0

    def end(self) -> None:
        self.peak = max(self.peak, self.bytes)

    def pack(self, tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in self.params and storage.data_ptr() not in self.seen:
            self.seen.add(storage.data_ptr())
            self.bytes += storage.nbytes()
        return tensor

    def hooks(self):
        return torch.autograd.graph.saved_tensors_hooks(self.pack, lambda tensor: tensor)


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
        self.saved = SavedForBackward(self.trainer.model)

    def run(self, steps: int) -> tuple[float, int]:
        """Train `steps` steps; (seconds, real tokens)."""
        tokens, t0 = 0, time.perf_counter()
        for _ in range(steps):
            batch = collate([self.encoded[i] for i in self.batches[self.step]], self.pad, self.trainer.share_prefix)
            self.saved.start()
            with self.saved.hooks():
                self.trainer.step(batch, lr_at(self.step, 0.0, self.config, LR))
            self.saved.end()
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
        self.batch_tokens: list[int] = []  # real tokens of every batch the collator made, in order

        def count(features):
            self.batch_tokens.append(sum(len(f["input_ids"]) for f in features))
            return collator(features)

        outer = self

        class Clock(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                if state.global_step == outer.first:  # the first step pays the dataloader's and optimizer's set-up
                    _sync()  # this step's batch is already collated: it is the first one timed
                    outer.t0, outer.timed_from = time.perf_counter(), len(outer.batch_tokens) - 1
                outer.saved.start()

            def on_step_end(self, args, state, control, **kwargs):
                outer.saved.end()

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
        self.saved = SavedForBackward(self.model)

    def run(self, steps: int) -> tuple[float, int]:
        trainer = self._make(steps + 1)  # a fresh Trainer per round: time steps 2..steps+1 (set-up excluded)
        with self.saved.hooks():
            trainer.train()
        _sync()
        seconds, tokens = time.perf_counter() - self.t0, sum(self.batch_tokens[self.timed_from:])
        self.batch_tokens.clear()
        return seconds, tokens


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def side_by_side(workload: str, device: str, dtype, rounds: int, steps: int, n_examples: int, out,
                 ablation: bool = False, smoke: bool = False) -> dict:
    lm, loaded = model_for(workload, device, dtype, smoke)
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
    saved = {side.label: side.saved.peak / 2**20 for side in sides}
    result["saved_for_backward_mib"] = {k: round(v, 1) for k, v in saved.items()}
    result["activation_ratio"] = round(saved["compound"] / saved["peft+Trainer"], 2)
    if memory:
        result["peak_mib"] = {k: round(v) for k, v in memory.items()}
        result["memory_ratio"] = round(memory["compound"] / memory["peft+Trainer"], 2)
    out(result)
    return result


def plain_loop(loaded, encoded, seconds: float) -> tuple[dict, dict, int]:
    """The loop measured while planning (issue #10): LoRA r=16 on every linear layer, lr 2e-3 constant, batch 32 of
    random examples, the model's own loss on answer-only labels, for `seconds`. Returns the adapter and its steps."""
    import copy
    import random

    from peft import get_peft_model, get_peft_model_state_dict

    torch.manual_seed(0)
    model = get_peft_model(copy.deepcopy(loaded.model).train(), method_config("lora"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR)
    rng, pad, steps, t0 = random.Random(0), loaded.tokenizer.pad_token_id or 0, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        rows = rng.sample(encoded, BATCH)
        width = max(len(e) for e in rows)
        ids = torch.full((BATCH, width), pad)
        labels = torch.full((BATCH, width), -100)
        mask = torch.zeros((BATCH, width), dtype=torch.long)
        for i, e in enumerate(rows):
            ids[i, : len(e)] = torch.tensor(e.prompt + e.answer)
            labels[i, len(e.prompt) : len(e)] = torch.tensor(e.answer)
            mask[i, : len(e)] = 1
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        steps += 1
    config = model.peft_config["default"].to_dict()
    return config, {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}, steps


def accuracy(seconds: float, out) -> str:
    """Test-split accuracy of zoo-small's convert before and after `seconds` of training: cp.finetune (dev-scored
    every 100 steps, best adapter) vs the plain loop, one after the other in this process."""
    from compound.tune.target import program_score

    small = cp.zoo.lm("small")
    loaded = cp.adapters.loaded_model_of(small)
    task = cp.zoo.tasks["convert"]
    program = dspy.Predict(task.signature)

    def test_score(lm):
        program.lm = lm
        with dspy.context(adapter=cp.CompactAdapter()):
            return program_score(program, task.test, task.metric, 8)

    before = test_score(small)
    encoded = [encode_chat(loaded.tokenizer, c, frozenset(loaded.engine.eos_ids)) for c in convert_chats(2000)]
    config, tensors, plain_steps = plain_loop(loaded, encoded, seconds)
    plain = test_score(cp.adapters.serve(small, "bench-plain-loop", config, tensors, cache=False))
    program.lm = small
    with dspy.context(adapter=cp.CompactAdapter()):
        job = cp.finetune(program, task.train, metric=task.metric, valset=task.dev, name="bench-compound",
                          max_time_s=seconds, epochs=100, eval_every=100, display=False)
        job.result()
    ours = test_score(program.lm)
    out({"workload": "convert accuracy", "seconds": seconds, "test_before": before,
         "plain_loop": {"test": plain, "steps": plain_steps},
         "compound": {"test": ours, "steps": job.step, "best_dev_step": job.best_step, "dev": job.best_score}})
    return (f"convert after {seconds:.0f} s: compound +{100 * (ours - before):.1f} points, plain PEFT loop "
            f"+{100 * (plain - before):.1f} points ({before:.1%} before)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="CPU, under a minute")
    ap.add_argument("--gpu", action="store_true", help="real small-model shapes on CUDA, bf16")
    ap.add_argument("--smoke", action="store_true", help="with --gpu: 2-layer shapes on the CPU, to check the script")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: compound's policy)")
    ap.add_argument("--accuracy", type=float, metavar="SECONDS", help="time-boxed test-score gain on convert")
    args = ap.parse_args(argv)
    dspy.disable_logging()

    def out(result):
        print(json.dumps(result), flush=True)

    if args.accuracy:
        torch.set_num_threads(args.threads or TrainConfig().cpu_threads())
        print(accuracy(args.accuracy, out))
        return

    if args.gpu:
        device, dtype = ("cpu", torch.float32) if args.smoke else ("cuda", torch.bfloat16)
        headline = None
        for workload in ("smollm2-135m", "qwen2.5-0.5b"):
            r = side_by_side(workload, device, dtype, rounds=1 if args.smoke else 3, steps=1 if args.smoke else 10,
                             n_examples=64 if args.smoke else 512, out=out, smoke=args.smoke)
            memory = f"{r['memory_ratio']:.2f}x peak memory" if "memory_ratio" in r else \
                f"{r['activation_ratio']:.2f}x activation memory"
            headline = f"{workload} LoRA training, compound vs peft+Trainer: {r['ratio']:.2f}x tokens/s at {memory}"
        print(headline)
        return

    torch.set_num_threads(args.threads or TrainConfig().cpu_threads())
    rounds, steps = (2, 5) if args.quick else (4, 15)
    results = {w: side_by_side(w, "cpu", torch.float32, rounds, steps if w == "convert" else max(2, steps // 3), 512,
                               out, ablation=not args.quick) for w in ("convert", "chat")}
    print(f"compound/peft+Trainer on CPU: tokens/s convert {results['convert']['ratio']:.2f}x, ChatAdapter prompts "
          f"{results['chat']['ratio']:.2f}x; activation memory {results['convert']['activation_ratio']:.2f}x, "
          f"{results['chat']['activation_ratio']:.2f}x")


if __name__ == "__main__":
    main()
