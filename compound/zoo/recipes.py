"""What a zoo model is made of: architecture, training schedule and data mix, and the hash that names the recipe.

The recipe hash covers everything that changes the weights (these numbers, the task generators' version, the chat
template and the adapter's rendering), so editing any of them makes the cache rebuild instead of serving stale weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import asdict, dataclass

FORMAT_VERSION = 5  # bump when the training code changes in a way the fields below do not capture
# Tokens of prompt + answer a zoo model takes. Room for DSPy's default demo counts (BootstrapFewShot's 16 demos of
# the longest task are ~700 tokens), and the models are trained on sequences that long (`max_pack`).
CONTEXT_LENGTH = 1024


@dataclass(frozen=True)
class ZooRecipe:
    """A Llama-architecture model and its deterministic pretraining run on the task suite.

    With `grow_from`, training starts from that recipe's trained model grown to this shape (`compound.zoo.grow`)
    instead of from random weights; the base recipe is part of this one, so it is part of the hash too.
    """

    name: str
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    steps: int
    batch_size: int = 16
    lr: float = 3e-3
    warmup_steps: int = 30
    prompt_loss_weight: float = 0.3
    weight_decay: float = 0.01
    seed: int = 0
    vocab_size: int = 1024
    # relative share of each task in the training batches: harder tasks get more
    task_mix: tuple[tuple[str, float], ...] = (("triage", 1.5), ("extract", 1.5), ("convert", 1.0), ("add", 1.0))
    # Few-shot robustness: this share of the steps packs 2..max_pack examples of one task into each sequence, rendered
    # exactly as DSPy renders demos (user/assistant turns after the instructions), every answer carrying the loss. A
    # model trained on single examples only answers *nothing* once an optimizer adds a demo.
    packed_share: float = 0.5
    max_pack: int = 16
    packed_from: float = 0.0  # share of the steps trained on single examples before packing starts
    grow_from: ZooRecipe | None = None

    def llama_config(self, tokenizer):
        from transformers import LlamaConfig

        return LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            num_key_value_heads=self.num_heads,
            max_position_embeddings=CONTEXT_LENGTH,
            tie_word_embeddings=True,
            bos_token_id=None,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )

    def replace(self, **changes) -> ZooRecipe:
        """A copy with some fields changed (tests build short variants: `RECIPES["tiny"].replace(steps=10)`)."""
        return dataclasses.replace(self, **changes)


# Held-out test split, zero-shot (see tests/zoo/test_accuracy.py); times on a quiet 2-core machine, 2 threads.
_TINY = ZooRecipe("tiny", hidden_size=128, num_layers=4, num_heads=4, intermediate_size=384, steps=500, lr=3e-3)
RECIPES: dict[str, ZooRecipe] = {
    # ~0.9M parameters, ~40 s: triage ~100% (also with 16 demos), but 500 steps are too few for the copying tasks
    # (extract, convert ~0%)
    "tiny": _TINY,
    # ~2M parameters grown from tiny (1.5x wider, 6 heads), then 1,600 more steps, ~3 min, on a mix that spends
    # little on triage (tiny already solved it). Packing starts only after 40% of the steps: from the start, it kept
    # small on the plateau before copying clicks (extract fell from ~45% to ~1%). Now extract ~45%, convert ~25%
    # zero-shot (demos still cost them accuracy); multi-digit addition stays out of reach of both.
    "small": ZooRecipe("small", hidden_size=192, num_layers=4, num_heads=6, intermediate_size=576, steps=1600,
                       lr=3e-3, grow_from=_TINY, packed_from=0.4,
                       task_mix=(("triage", 0.3), ("extract", 3.0), ("convert", 1.5), ("add", 0.5))),
}


def recipe_hash(recipe: ZooRecipe) -> str:
    """sha256 over the recipe, the suite version, the chat template and a sample of the adapter's rendering."""
    from compound.zoo.suite import SUITE_VERSION
    from compound.zoo.tokenizer import CHAT_TEMPLATE, SPECIAL_TOKENS

    payload = {
        "recipe": asdict(recipe),
        "format_version": FORMAT_VERSION,
        "context_length": CONTEXT_LENGTH,
        "suite_version": SUITE_VERSION,
        "chat_template": CHAT_TEMPLATE,
        "special_tokens": SPECIAL_TOKENS,
        "adapter_sample": adapter_sample(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def adapter_sample() -> list[dict]:
    """How CompactAdapter renders one fixed example: a change in the adapter's format changes the recipe hash."""
    import dspy

    from compound.zoo.adapter import CompactAdapter

    signature = dspy.Signature("a, b -> c", "Sample.")
    return CompactAdapter().format_finetune_data(signature, [], {"a": "1", "b": "x y"}, {"c": "2"})["messages"]
