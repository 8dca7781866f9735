"""Training data for `cp.finetune`: DSPy examples -> chat messages -> token ids -> length-bucketed batches.

1. Chat messages always come from the DSPy adapter's `format_finetune_data` (ChatAdapter, `cp.CompactAdapter`), with
   the predictor's own signature and demos, so the model learns exactly the prompt it is served. They are either the
   examples' own labels (`direct`) or traces bootstrapped through the program and kept when the metric passes
   (`bootstrapped`, as `dspy.BootstrapFinetune` does).
2. Token ids: the prompt is rendered by the engine's `render_prompt` (the same text and ids it feeds the model); the
   answer is the last assistant turn with the chat template's end-of-turn token. Only answer tokens carry loss.
3. Batches: examples of similar length are batched together (fewer padding tokens), batch order is shuffled per
   epoch from the seed, so a resumed run sees the same batches.

Example:
    >>> from compound.testing import tiny_tokenizer
    >>> ex = encode_chat(tiny_tokenizer(), [{"role": "user", "content": "1 + 1"}, {"role": "assistant", "content": "2"}])
    >>> len(ex.prompt) > 0, tiny_tokenizer().decode(ex.answer)
    (True, '2<|end|>')
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from compound.lm.prompt import prompt_ids, render_prompt


@dataclass
class Encoded:
    """One training example as token ids: the prompt the engine feeds the model, then the answer (the loss)."""

    prompt: list[int]
    answer: list[int]

    def __len__(self) -> int:
        return len(self.prompt) + len(self.answer)


def encode_chat(tokenizer, messages: list[dict], eos_ids: frozenset[int] = frozenset()) -> Encoded:
    """Token ids of chat `messages` whose last turn is the assistant's answer, exactly as the engine serves them."""
    if not messages or messages[-1].get("role") != "assistant":
        raise ValueError("a training example's messages must end with the assistant's answer, e.g. "
                         "[{'role': 'user', 'content': ...}, {'role': 'assistant', 'content': ...}]")
    system = messages[0]["content"] if messages[0]["role"] == "system" else None
    turns = [dict(role=m["role"], content=m["content"]) for m in messages[1 if system is not None else 0 : -1]]
    prompt_text = render_prompt(tokenizer, system, turns)
    answer_text = _answer_text(tokenizer, messages, prompt_text)
    answer = tokenizer(answer_text, add_special_tokens=False)["input_ids"]
    stops = set(eos_ids) | ({tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set())
    end = next((i for i, t in enumerate(answer) if t in stops), None)
    if end is not None:
        answer = answer[: end + 1]  # what follows the end-of-turn token is never generated
    elif tokenizer.eos_token_id is not None:
        answer.append(tokenizer.eos_token_id)
    return Encoded(prompt_ids(tokenizer, prompt_text), answer)


def _answer_text(tokenizer, messages: list[dict], prompt_text: str) -> str:
    content = messages[-1]["content"]
    if getattr(tokenizer, "chat_template", None):
        try:
            full = tokenizer.apply_chat_template([dict(m) for m in messages], tokenize=False)
        except Exception:  # e.g. a template without a system role; render_prompt folded it into the user turn
            full = ""
        if full.startswith(prompt_text) and content in full[len(prompt_text):]:
            return full[len(prompt_text):]  # the template's own end-of-turn tokens included
        return content + (tokenizer.eos_token or "")
    return " " + content + (tokenizer.eos_token or "")  # render_prompt's plain transcript ends with "Assistant:"


def data_hash(chats: Sequence[list[dict]]) -> str:
    """sha256 of the training chats: which data an adapter was trained on, recorded in its manifest."""
    h = hashlib.sha256()
    for messages in chats:
        h.update(json.dumps(messages, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


# ---- DSPy examples -> chat messages -------------------------------------------------------------------------------
def has_labels(predictors: Sequence, examples: Sequence) -> bool:
    """Whether every example holds every input and output field of every predictor (then no bootstrapping is needed)."""
    fields = {f for p in predictors for f in [*p.signature.input_fields, *p.signature.output_fields]}
    return all(all(f in ex for f in fields) for ex in examples)


def format_for(adapter, predictor, inputs: dict, outputs: dict) -> list[dict]:
    """The chat messages `adapter` serves `predictor` for `inputs`, followed by the answer `outputs`."""
    try:
        data = adapter.format_finetune_data(
            signature=predictor.signature, demos=list(predictor.demos), inputs=inputs, outputs=outputs
        )
    except NotImplementedError:
        raise ValueError(f"{type(adapter).__name__} cannot format fine-tuning data; configure dspy.ChatAdapter() or "
                         "cp.CompactAdapter() (dspy.configure(adapter=...)) for the module you fine-tune") from None
    return data["messages"]


def direct_chats(predictors: Sequence, examples: Sequence, adapter) -> list[list[dict]]:
    """One chat per (example, predictor) from the examples' own inputs and labels."""
    chats = []
    for ex in examples:
        for pred in predictors:
            sig = pred.signature
            chats.append(format_for(adapter, pred, {k: ex[k] for k in sig.input_fields},
                                    {k: ex[k] for k in sig.output_fields}))
    return chats


def bootstrap_chats(program, predictors: Sequence, examples: Sequence, metric: Callable | None, adapter,
                    *, teacher=None, threads: int = 8, stop: Callable[[], bool] = lambda: False
                    ) -> tuple[list[list[dict]], int]:
    """Run `teacher` (default: `program`) on the examples and turn the calls of the target predictors into chats,
    keeping an example's calls only when `metric` passes (any truthy score). Returns (chats, examples kept)."""
    import dspy
    from dspy.utils.parallelizer import ParallelExecutor

    runner = teacher if teacher is not None else program
    ours = [p for _, p in program.named_predictors()]
    theirs = [p for _, p in runner.named_predictors()]
    if len(ours) != len(theirs):
        raise ValueError(f"`teacher` must have the same predictors as the program ({len(ours)}), it has {len(theirs)}")
    # a trace step of the runner's i-th predictor trains the program's i-th predictor, in the program's own format
    target_of = {id(t): o for t, o in zip(theirs, ours) if any(o is p for p in predictors)}

    def run(example):
        if stop():
            return None
        with dspy.context(trace=[]):
            prediction = runner(**example.inputs())
            trace = list(dspy.settings.trace)
        score = metric(example, prediction, trace) if metric is not None else True
        return trace if score else None

    results = ParallelExecutor(num_threads=threads, max_errors=len(examples) * 10, disable_progress_bar=True,
                               provide_traceback=False).execute(run, list(examples))
    chats, kept = [], 0
    for trace in results:
        if not trace:
            continue
        kept += 1
        for step_pred, inputs, outputs in trace:
            pred = target_of.get(id(step_pred))
            if pred is not None:
                chats.append(format_for(adapter, pred, dict(inputs),
                                        {k: outputs[k] for k in pred.signature.output_fields}))
    return chats, kept


# ---- batches --------------------------------------------------------------------------------------------------------
def epoch_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Example indices per batch for one epoch: shuffled, sorted by length within windows of 50 batches (so a batch
    holds similar lengths), then the batches shuffled. The same (seed, epoch) always gives the same batches."""
    rng = random.Random(f"compound-tune/{seed}/{epoch}")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 50
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


@dataclass
class Batch:
    """Right-padded tensors of one batch. With a shared prefix, `prefix_ids` (1, P) is the prompt start every row
    shares and `input_ids` holds only what follows it; `labels` is -100 except on answer tokens."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    prefix_ids: torch.Tensor | None
    tokens: int  # real tokens of the batch as if nothing were shared (what tokens/s counts)


def shared_prefix_len(examples: Sequence[Encoded]) -> int:
    """Tokens every prompt of the batch starts with, leaving each prompt at least one token of its own."""
    first = examples[0].prompt
    n = min(len(e.prompt) for e in examples) - 1
    for e in examples[1:]:
        n = next((i for i in range(n) if e.prompt[i] != first[i]), n)
    return max(n, 0)


def shared_fraction(encoded: Sequence[Encoded], batch_size: int, seed: int = 0) -> float:
    """Share of the tokens in (up to 50 of) an epoch's batches that computing each shared prompt prefix once saves."""
    saved = total = 0
    for batch in epoch_batches([len(e) for e in encoded], batch_size, seed, 0)[:50]:
        rows = [encoded[i] for i in batch]
        saved += (shared_prefix_len(rows) if len(rows) > 1 else 0) * (len(rows) - 1)
        total += sum(len(e) for e in rows)
    return saved / max(1, total)


def collate(examples: Sequence[Encoded], pad_id: int, share_prefix: bool) -> Batch:
    p = shared_prefix_len(examples) if share_prefix and len(examples) > 1 else 0
    width = max(len(e) for e in examples) - p
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    for row, e in enumerate(examples):
        seq = (e.prompt + e.answer)[p:]
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
        labels[row, len(e.prompt) - p : len(seq)] = torch.tensor(e.answer)
    prefix = torch.tensor([examples[0].prompt[:p]]) if p else None
    return Batch(ids, mask, labels, prefix, sum(len(e) for e in examples))


def describe(chats: Sequence[list[dict]], encoded: Sequence[Encoded]) -> dict[str, Any]:
    """Counts for the manifest and the job's detail line."""
    return {"examples": len(chats), "tokens": sum(len(e) for e in encoded),
            "answer_tokens": sum(len(e.answer) for e in encoded)}
