"""The zoo's tokenizer: byte-level BPE trained by compound on the task suite, digits always single tokens.

Single-digit tokens let a tiny model do column arithmetic (a merged "48" would hide the digits it must add). Roles
are special tokens and the chat template adds no whitespace, so a one-field prompt costs ~20 tokens:

    <|system|>Add the numbers.<|user|>expression: 48 + 7<|assistant|>total: 55<|end|>

Example:
    >>> from compound.zoo.tokenizer import train_tokenizer
    >>> tok = train_tokenizer(["expression: 48 + 7", "total: 55"], vocab_size=300)
    >>> tok.convert_ids_to_tokens(tok("1234")["input_ids"])
    ['1', '2', '3', '4']
"""

from __future__ import annotations

from collections.abc import Iterable

from compound.zoo.recipes import CONTEXT_LENGTH

SPECIAL_TOKENS = ("<|pad|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>")

# `render_prompt` in compound.lm feeds this template [system, *messages] with add_generation_prompt=True.
CHAT_TEMPLATE = (
    "{%- for m in messages -%}"
    "{%- if m['role'] not in ('system', 'user', 'assistant') -%}"
    "{{ raise_exception('zoo models know the roles system, user and assistant, not ' + m['role']) }}"
    "{%- endif -%}"
    "{{ '<|' + m['role'] + '|>' + m['content'] }}"
    "{%- if m['role'] == 'assistant' -%}{{ '<|end|>' }}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>' }}{%- endif -%}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """Train a byte-level BPE (digits split first) on `texts`; returns a `PreTrainedTokenizerFast` with the template.

    Deterministic: the same texts in the same order give the same merges.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<|pad|>",
        eos_token="<|end|>",
        clean_up_tokenization_spaces=False,
        model_max_length=CONTEXT_LENGTH,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast
