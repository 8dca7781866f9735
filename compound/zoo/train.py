"""Deterministic pretraining of the zoo models on the task suite, rendered exactly as they will be prompted.

A training sequence is what compound's engine feeds the model for a CompactAdapter request: the task's instructions
(`<|system|>`), then one or more examples of that task as `<|user|>inputs<|assistant|>outputs<|end|>` turns. With one
example it is a zero-shot call; with several, every earlier example is a demo for the later ones, exactly as DSPy
renders few-shot demos, so the demos an optimizer adds neither overflow the context nor derail the model. Every answer
carries the loss, the prompt a small share of it (`ZooRecipe.prompt_loss_weight`).
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
    """One task's training split as token ids: the instructions once, then each example's turn in two parts."""

    system: list[int]  # <|system|> + instructions
    prompts: list[list[int]]  # <|user|> + inputs + <|assistant|>, one per example
    answers: list[list[int]]  # outputs + <|end|>, one per example: the tokens that carry the answer loss

    def sequence(self, rows: list[int]) -> tuple[list[int], list[bool]]:
        """Token ids of the examples `rows` packed after the instructions, and which of them are answer tokens."""
        ids, is_answer = list(self.system), [False] * len(self.system)
        for row in rows:
            ids += self.prompts[row] + self.answers[row]
            is_answer += [False] * len(self.prompts[row]) + [True] * len(self.answers[row])
        return ids, is_answer


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
    """Tokenize every example's turn; checks a packed sequence against the chat template and the engine's prompt."""
    from compound.lm.prompt import prompt_ids, render_prompt

    assistant = "<|assistant|>"  # render_prompt ends every prompt with it (add_generation_prompt)
    encoded: dict[str, Encoded] = {}
    for task, convos in messages.items():
        system = convos[0][0]["content"]
        if any(convo[0]["content"] != system for convo in convos):
            raise RuntimeError(f"zoo task {task!r} must have one system prompt (its instructions)")
        # roles are special tokens, so BPE merges never cross a turn boundary and turns tokenize on their own
        system_text = render_prompt(tokenizer, system, []).removesuffix(assistant)
        prompts = [render_prompt(tokenizer, None, convo[1:-1]) for convo in convos]
        answers = [convo[-1]["content"] + tokenizer.eos_token for convo in convos]
        data = encoded[task] = Encoded(
            tokenizer(system_text, add_special_tokens=False)["input_ids"],
            tokenizer(prompts, add_special_tokens=False)["input_ids"],
            tokenizer(answers, add_special_tokens=False)["input_ids"],
        )
        # Two examples packed (the first is the second's demo) must be the chat template's tokens, and what precedes
        # the second answer must be the prompt the engine feeds the model.
        two = [*convos[0], *convos[1][1:]]
        ids, _ = data.sequence([0, 1])
        if ids != tokenizer(tokenizer.apply_chat_template(two, tokenize=False), add_special_tokens=False)["input_ids"]:
            raise RuntimeError(f"zoo training tokens of {task!r} differ from the chat template's")
        prompt = prompt_ids(tokenizer, render_prompt(tokenizer, system, two[1:-1]))
        if ids[: len(prompt)] != prompt or ids[len(prompt):] != data.answers[1]:
            raise RuntimeError(f"zoo training prompt of {task!r} differs from what the engine feeds the model")
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
    """`$COMPOUND_ZOO_THREADS`, else 2: the same count on every machine, so every machine builds the same weights.

    Float sums, and so the exact weights, differ between thread counts (measured: 1 and 2 threads build different
    models; 2 threads build the same bits on a quiet or a busy machine), and the notebooks' saved outputs come from
    the 2-thread build. Two threads make tiny's steps ~1.6x faster than one on a quiet 2-core machine; these
    matrices are too small to gain from more. The thread count is recorded in the manifest.
    """
    return max(1, int(os.environ.get("COMPOUND_ZOO_THREADS") or 2))


def _batches(recipe: ZooRecipe, data: dict[str, Encoded], pad_id: int) -> Iterator[tuple]:
    """`recipe.steps` batches of (input_ids, attention mask, answer mask) holding ~`batch_size` examples each.

    A step packs k examples into each sequence (k = 1, or 2..`max_pack` for a `packed_share` of the steps) and takes
    `batch_size // k` sequences, so every step trains on about as many answers and tokens whatever k is.
    """
    import torch

    rng = random.Random(f"compound-zoo/batches/{recipe.name}/{recipe.seed}")
    names = [name for name, _ in recipe.task_mix]
    weights = [w for _, w in recipe.task_mix]
    for step in range(recipe.steps):
        packing = step >= recipe.packed_from * recipe.steps and rng.random() < recipe.packed_share
        k = rng.randint(2, recipe.max_pack) if packing else 1
        rows = [data[task].sequence([rng.randrange(len(data[task].prompts)) for _ in range(k)])
                for task in rng.choices(names, weights, k=max(1, recipe.batch_size // k))]
        width = max(len(ids) for ids, _ in rows)
        input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        is_answer = torch.zeros((len(rows), width), dtype=torch.bool)
        for row, (ids, answer) in enumerate(rows):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            mask[row, : len(ids)] = 1
            is_answer[row, : len(ids)] = torch.tensor(answer)
        yield input_ids, mask, is_answer


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
        for input_ids, mask, is_answer in _batches(recipe, data, tokenizer.pad_token_id):
            logits = model(input_ids=input_ids, attention_mask=mask).logits[:, :-1]
            loss = weighted_loss(logits, input_ids[:, 1:], mask[:, 1:], is_answer[:, 1:], recipe.prompt_loss_weight)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if progress is not None:
                progress(1)
        model.eval()
    return model
