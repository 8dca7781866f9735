"""Tiny real models for tests, notebooks and benchmarks: built from a config and a tokenizer trained on the spot.

They run in milliseconds on a CPU. Their weights are random (or briefly trained), never a stand-in for model output.

Example:
    >>> from compound.testing import tiny_llama
    >>> model, tokenizer = tiny_llama(seed=0)
    >>> model.config.num_hidden_layers
    2
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIAL = ["<|pad|>", "<|bos|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]

_CORPUS = [
    "Your input fields are: `question` (str). Your output fields are: `answer` (str).",
    "All interactions will be structured in the following way, with the appropriate values filled in.",
    "[[ ## question ## ]] [[ ## answer ## ]] [[ ## reasoning ## ]] [[ ## completed ## ]]",
    "Respond with the corresponding output fields, starting with the field, and then ending with the marker for",
    "In adhering to this structure, your objective is: Given the fields, produce the fields.",
    "the quick brown fox jumps over the lazy dog 0 1 2 3 4 5 6 7 8 9 + - * / = ? ! . , : ; ( ) ' \"",
    "What is the capital of France? Paris. Berlin, Rome, Madrid, yes no maybe hello world",
]


@functools.lru_cache(maxsize=4)
def tiny_tokenizer(vocab_size: int = 384, extra_corpus: tuple[str, ...] = ()):
    """A byte-level BPE tokenizer with a chat template, trained in milliseconds on a fixed corpus (deterministic)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,  # its progress bar prints blank lines off a terminal (and into doctest output)
    )
    tok.train_from_iterator([*_CORPUS * 4, *extra_corpus], trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<|pad|>", bos_token="<|bos|>", eos_token="<|end|>"
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_llama(
    seed: int = 0, *, layers: int = 2, hidden: int = 64, heads: int = 4, kv_heads: int = 2, max_pos: int = 1024,
    tokenizer=None,
):
    """A random Llama-architecture causal LM and its tokenizer (fp32, CPU, eval mode)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tokenizer or tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_pos,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    return model, tokenizer


# A toy lookup task the trained tiny model learns in ChatAdapter's exact format, so DSPy can parse its answers.
CAPITALS = {"France": "Paris", "Italy": "Rome", "Spain": "Madrid", "Germany": "Berlin", "Japan": "Tokyo", "Peru": "Lima"}


def _chat_examples():
    """(prompt text, target text) pairs for Predict and ChainOfThought over `question -> answer`."""
    import dspy

    adapter = dspy.ChatAdapter()
    pairs = []
    for module in (dspy.Predict("question -> answer"), dspy.ChainOfThought("question -> answer")):
        sig = module.predict.signature if hasattr(module, "predict") else module.signature
        for country, city in CAPITALS.items():
            msgs = adapter.format(sig, demos=[], inputs={"question": f"What is the capital of {country}?"})
            system = "\n".join(m["content"] for m in msgs if m["role"] == "system")
            fields = {"answer": city}
            if "reasoning" in sig.output_fields:
                fields = {"reasoning": f"{country} has capital {city}.", "answer": city}
            target = adapter.format_assistant_message_content(sig, fields, missing_field_message=None)
            pairs.append((system, [m for m in msgs if m["role"] != "system"], target))
    return pairs


_CAPITALS_RECIPE = "capitals-v1"


@functools.lru_cache(maxsize=2)
def capitals_llama(seed: int = 0, steps: int = 300):
    """A tiny Llama trained for a few seconds to answer `question -> answer` capital questions in ChatAdapter format,
    for `dspy.Predict` and `dspy.ChainOfThought` (see `CAPITALS`). Deterministic for a given seed; kept on disk under
    `$COMPOUND_CACHE/testing` (default `~/.cache/compound`) after the first build."""
    import os
    import shutil
    import tempfile
    from pathlib import Path

    from transformers import AutoTokenizer, LlamaForCausalLM

    root = Path(os.environ.get("COMPOUND_CACHE", Path.home() / ".cache" / "compound")) / "testing"
    folder = root / f"{_CAPITALS_RECIPE}-seed{seed}-steps{steps}"
    if (folder / "model.safetensors").exists():
        return LlamaForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
    model, tokenizer = _train_capitals(seed, steps)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".building-"))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        os.replace(tmp, folder)  # atomic: a half-written folder is never seen under the final name
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return model, tokenizer


def _train_capitals(seed: int, steps: int):
    from compound.lm.prompt import prompt_ids, render_prompt

    examples = _chat_examples()
    tokenizer = tiny_tokenizer(1024, tuple(s + "".join(m["content"] for m in ms) + t for s, ms, t in examples))
    model, tokenizer = tiny_llama(seed, layers=2, hidden=64, tokenizer=tokenizer)
    pairs = [
        (prompt_ids(tokenizer, render_prompt(tokenizer, s, ms)),
         tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])
        for s, ms, t in examples
    ]
    width = max(len(p) + len(t) for p, t in pairs)
    ids = torch.full((len(pairs), width), tokenizer.pad_token_id)
    labels = torch.full((len(pairs), width), -100)
    for i, (p, t) in enumerate(pairs):
        ids[i, : len(p) + len(t)] = torch.tensor(p + t)
        labels[i, len(p) : len(p) + len(t)] = torch.tensor(t)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), tokenizer


@functools.lru_cache(maxsize=4)
def word_tokenizer(vocab_size: int):
    """A word-level tokenizer with exactly `vocab_size` entries (`w0`, `w1`, ...), for real model shapes with random
    weights: any id decodes, so engine and baseline detokenize the same way."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL)}
    vocab.update({f"w{i}": i for i in range(len(SPECIAL), vocab_size)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<|pad|>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|pad|>", bos_token="<|bos|>", eos_token="<|end|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


class ScriptedEngine:
    """A DSPy `Engine` that answers with scripted replies, in order, streamed in `chunk`-character deltas.

    For testing what sits around a model (adapters, stream listeners, callbacks) with exact, known model output, as
    DSPy's `DummyLM` does for ChatAdapter. Tests of model behaviour use the zoo or `tiny_llama` instead.

    Example:
        >>> import dspy
        >>> from compound.testing import scripted_lm
        >>> lm = scripted_lm(["answer: Paris"])
        >>> lm("What is the capital of France?")
        ['answer: Paris']
    """

    def __init__(self, replies: list[str], chunk: int = 3):
        self.replies, self.chunk, self.requests = list(replies), chunk, []

    def _next_reply(self, request) -> str:
        self.requests.append(request)
        if not self.replies:
            raise RuntimeError(f"ScriptedEngine ran out of replies after {len(self.requests) - 1} requests")
        return self.replies.pop(0)

    def complete(self, request):
        from dspy.lm15 import Message, Response, TextPart, Usage

        text = self._next_reply(request)
        return Response(id=None, model=request.model, message=Message.assistant(TextPart(text)), finish_reason="stop",
                        usage=Usage(input_tokens=1, output_tokens=max(1, len(text) // self.chunk)))

    def stream(self, request):
        from dspy.lm15 import StreamDeltaEvent, StreamEndEvent, StreamStartEvent, TextDelta, Usage

        text = self._next_reply(request)
        yield StreamStartEvent(model=request.model)
        for start in range(0, len(text), self.chunk):
            yield StreamDeltaEvent(TextDelta(text[start : start + self.chunk]))
        yield StreamEndEvent(finish_reason="stop", usage=Usage(input_tokens=1, output_tokens=1))

    def close(self) -> None:
        pass


def scripted_lm(replies: list[str], chunk: int = 3, **lm_kwargs):
    """A `dspy.LM` over a `ScriptedEngine` (no cache, so every call takes the next reply)."""
    import dspy

    lm_kwargs.setdefault("cache", False)
    return dspy.LM("local/scripted", engine=ScriptedEngine(replies, chunk), **lm_kwargs)


def reverse_chats(n: int = 64, seed: int = 0) -> list[dict]:
    """Chat data a tiny random model can learn fast: reverse three words (`cp.finetune` of an LM takes this form).

    Example:
        >>> reverse_chats(1)[0]["messages"][-1]
        {'role': 'assistant', 'content': 'red sun two'}
    """
    import random

    rng = random.Random(seed)
    words = ["red", "blue", "green", "fox", "dog", "one", "two", "yes", "no", "sun"]
    rows = []
    for _ in range(n):
        w = rng.sample(words, 3)
        rows.append({"messages": [{"role": "system", "content": "Answer."}, {"role": "user", "content": " ".join(w)},
                                  {"role": "assistant", "content": " ".join(reversed(w))}]})
    return rows


def tiny_served_lm(name: str, seed: int = 0, **lm_kwargs):
    """A random tiny Llama served by compound as a `dspy.LM` named `local/<name>` (examples that fine-tune it)."""
    from compound.lm import LM

    model, tok = tiny_llama(seed)
    lm_kwargs.setdefault("cache", False)
    return LM(model, tokenizer=tok, name=name, **lm_kwargs)


@contextlib.contextmanager
def dspy_settings_restored() -> Iterator[None]:
    """Run a block that may `dspy.configure(...)` as a user would, then put DSPy's global settings back as they were.

    Example:
        >>> import dspy
        >>> before = dspy.settings.adapter
        >>> with dspy_settings_restored():
        ...     dspy.configure(adapter=dspy.JSONAdapter())
        >>> dspy.settings.adapter is before
        True
    """
    import importlib

    import dspy

    config = importlib.import_module("dspy.dsp.utils.settings").main_thread_config  # the module, not `settings`
    before = dict(config)
    try:
        yield
    finally:
        if dict(config) != before:
            dspy.configure(**{key: before.get(key) for key in {*before, *config}})
