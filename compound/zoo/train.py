"""Deterministic pretraining of the zoo models on the task suite, rendered exactly as they will be prompted.

Each training sequence is `render_prompt(tokenizer, system, [user])` (what compound's engine feeds the model for a
CompactAdapter request) followed by the assistant's answer and `<|end|>`; the answer carries the loss, the prompt a
small share of it (`ZooRecipe.prompt_loss_weight`).
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass

from compound.zoo.grow import grow_llama
from compound.zoo.recipes import ZooRecipe
from compound.zoo.suite import TASKS


@dataclass
class Encoded:
    """One task's training split as token ids, with where the answer starts in each sequence."""

    ids: list[list[int]]
    answer_start: list[int]


def corpus_messages(split: str = "train") -> dict[str, list[list[dict]]]:
    """Every example of a split rendered by CompactAdapter as chat messages (system, user, assistant)."""
    from compound.zoo.adapter import CompactAdapter

    adapter = CompactAdapter()
    out: dict[str, list[list[dict]]] = {}
    for task in TASKS:
        signature = task.signature
        rows = task.rows(split)
        out[task.name] = [
            adapter.format_finetune_data(
                signature, [], {k: r[k] for k in task.inputs}, {k: r[k] for k in task.outputs}
            )["messages"]
            for r in rows
        ]
    return out


def tokenizer_texts(messages: dict[str, list[list[dict]]]) -> Iterator[str]:
    """The message contents the BPE is trained on (roles are special tokens, so they are left out)."""
    for convos in messages.values():
        for convo in convos:
            for m in convo:
                yield m["content"]


def encode(tokenizer, messages: dict[str, list[list[dict]]]) -> dict[str, Encoded]:
    """Token ids of prompt + answer + `<|end|>`; checks the prompt is the engine's rendering, token for token."""
    from compound.lm.prompt import prompt_ids, render_prompt

    encoded: dict[str, Encoded] = {}
    for task, convos in messages.items():
        prompts = [render_prompt(tokenizer, convo[0]["content"], convo[1:-1]) for convo in convos]
        answers = [convo[-1]["content"] + tokenizer.eos_token for convo in convos]
        full_texts = [p + a for p, a in zip(prompts, answers)]
        reference = tokenizer.apply_chat_template(convos[0], tokenize=False)
        if reference != full_texts[0]:
            raise RuntimeError(f"zoo training text {full_texts[0]!r} differs from the chat template {reference!r}")
        prompt_tokens = tokenizer(prompts, add_special_tokens=False)["input_ids"]
        full_tokens = tokenizer(full_texts, add_special_tokens=False)["input_ids"]
        starts = []
        for p, f in zip(prompt_tokens, full_tokens):
            # the answer follows the special <|assistant|> token, so BPE merges never cross the boundary
            if f[: len(p)] != p:
                raise RuntimeError("prompt tokens are not a prefix of the training sequence")
            starts.append(len(p))
        if prompt_tokens[0] != prompt_ids(tokenizer, prompts[0]):
            raise RuntimeError("zoo prompt tokens differ from what the engine feeds the model")
        encoded[task] = Encoded(full_tokens, starts)
    return encoded


@contextlib.contextmanager
def deterministic_torch(seed: int, threads: int) -> Iterator[None]:
    """Seed torch, force deterministic kernels and a fixed thread count; restore the caller's settings after."""
    import torch

    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


def training_threads() -> int:
    """`$COMPOUND_ZOO_THREADS`, else the machine's cores up to 4 (these matrices are too small to use more).

    Two threads make tiny's steps ~1.6x faster than one on a quiet 2-core machine. On a machine shared with other busy
    jobs, intra-op threads busy-waiting for each other measured up to ~50x slower per step: set
    `COMPOUND_ZOO_THREADS=1` there. The thread count is recorded in the manifest; float sums, and so the exact
    weights, can differ between thread counts.
    """
    return max(1, int(os.environ.get("COMPOUND_ZOO_THREADS") or min(4, os.cpu_count() or 1)))


def _batches(recipe: ZooRecipe, data: dict[str, Encoded], pad_id: int) -> Iterator[tuple]:
    import torch

    rng = random.Random(f"compound-zoo/batches/{recipe.name}/{recipe.seed}")
    names = [name for name, _ in recipe.task_mix]
    weights = [w for _, w in recipe.task_mix]
    for _ in range(recipe.steps):
        picks = [(task, rng.randrange(len(data[task].ids))) for task in rng.choices(names, weights, k=recipe.batch_size)]
        width = max(len(data[t].ids[i]) for t, i in picks)
        input_ids = torch.full((len(picks), width), pad_id, dtype=torch.long)
        labels = torch.full((len(picks), width), -100, dtype=torch.long)
        mask = torch.zeros((len(picks), width), dtype=torch.long)
        for row, (t, i) in enumerate(picks):
            seq, start = data[t].ids[i], data[t].answer_start[i]
            input_ids[row, : len(seq)] = torch.tensor(seq)
            labels[row, start : len(seq)] = torch.tensor(seq[start:])
            mask[row, : len(seq)] = 1
        yield input_ids, mask, labels


def weighted_loss(logits, targets, mask, is_answer, prompt_weight: float):
    """Next-token cross-entropy: answer tokens weigh 1, prompt tokens `prompt_weight`, padding 0.

    A little loss on the prompt (reading the ticket's words) gets a small model off the loss plateau where it only
    predicts each task's most common answer several times sooner than answer-only loss does.
    """
    import torch

    weights = mask.float() * prompt_weight + is_answer.float() * (1.0 - prompt_weight)
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="none")
    return (ce.view_as(weights) * weights).sum() / weights.sum()


def pretrain(recipe: ZooRecipe, tokenizer, data: dict[str, Encoded], progress=None, grow=None):
    """Train a LlamaForCausalLM for `recipe.steps` steps; returns the model in eval mode.

    It starts from random weights, or with `grow` (the trained model of `recipe.grow_from`) from that model grown to
    the recipe's shape. `progress(n)` is called after each step (a tqdm bar's `update`).
    """
    import math

    import torch
    from transformers import LlamaForCausalLM

    with deterministic_torch(recipe.seed, training_threads()):
        if grow is None:
            model = LlamaForCausalLM(recipe.llama_config(tokenizer))
        else:
            model = grow_llama(grow, hidden_size=recipe.hidden_size, num_attention_heads=recipe.num_heads,
                               intermediate_size=recipe.intermediate_size, num_hidden_layers=recipe.num_layers)
        decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
        no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=recipe.lr, betas=(0.9, 0.95),
        )

        def lr_at(step: int) -> float:  # linear warm-up, then cosine down to 10%
            if step < recipe.warmup_steps:
                return (step + 1) / recipe.warmup_steps
            t = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
            return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
        model.train()
        for input_ids, mask, labels in _batches(recipe, data, tokenizer.pad_token_id):
            logits = model(input_ids=input_ids, attention_mask=mask).logits[:, :-1]
            loss = weighted_loss(logits, input_ids[:, 1:], mask[:, 1:], labels[:, 1:] != -100,
                                 recipe.prompt_loss_weight)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if progress is not None:
                progress(1)
        model.eval()
    return model
