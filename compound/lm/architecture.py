"""Which models the engine serves exactly, and the attention masks that make it exact.

The engine keeps its own K/V memory and hands every model one additive attention mask per forward pass. That is only
right when the mask says everything the model's attention does: causal attention over all earlier tokens, or a
sliding window over the last `sliding_window` tokens (Mistral, Phi-3, Gemma 2/3, Qwen2 with `use_sliding_window`),
per layer where layers alternate. Models with other layers (state-space, convolution, linear or chunked attention:
Mamba, Jamba, LFM2, Qwen3-Next, Llama 4, ...) are refused at load with the reason and what to do instead.

Families are admitted only when a parity test against HF `generate` covers them (`tests/lm/test_architectures.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from compound.lm.errors import UnsupportedArchitectureError

# model_type -> how the model takes a prepared mask: one tensor for all layers, or a dict by layer type
VERIFIED = {
    "llama": "tensor",  # Llama 2/3, SmolLM/SmolLM2, the zoo models
    "mistral": "tensor",
    "phi3": "tensor",
    "gemma": "tensor",
    "qwen2": "by_layer_type",
    "qwen3": "by_layer_type",
    "gemma2": "by_layer_type",
    "gemma3_text": "by_layer_type",
}
ATTENTION_LAYERS = {"full_attention", "sliding_attention"}


@dataclass(frozen=True)
class AttentionLayout:
    """Per layer: full causal attention or a sliding window of `window` tokens (key k seen from query q iff
    q - window < k <= q, as in transformers' `sliding_window_overlay`)."""

    layer_types: tuple[str, ...]
    window: int | None
    mask_style: str  # "tensor" or "by_layer_type"

    @property
    def sliding(self) -> bool:
        return "sliding_attention" in self.layer_types

    def masks(self, query_pos: torch.Tensor, kv_len: int, dtype: torch.dtype):
        """What to pass as `attention_mask`: a (B, 1, Q, kv_len) additive mask, or a dict of them by layer type."""
        if self.mask_style == "tensor":
            return attention_mask(query_pos, kv_len, dtype, self.window if self.sliding else None)
        masks = {"full_attention": attention_mask(query_pos, kv_len, dtype)}
        if self.sliding:
            masks["sliding_attention"] = attention_mask(query_pos, kv_len, dtype, self.window)
        return masks


def attention_mask(query_pos: torch.Tensor, kv_len: int, dtype: torch.dtype, window: int | None = None) -> torch.Tensor:
    """Additive mask (B, 1, Q, kv_len): a query at position p sees keys 0..p of its own row (the last `window` only).

    Padding queries carry position -1 and see key 0 only, so no row is all -inf (that would give NaN).
    """
    keys = torch.arange(kv_len, device=query_pos.device)[None, None, :]
    pos = query_pos.clamp(min=0)[:, :, None]
    allowed = keys <= pos  # (B, Q, kv_len)
    if window is not None:
        allowed &= keys > pos - window
    mask = torch.zeros(allowed.shape, dtype=dtype, device=query_pos.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[:, None]


def attention_layout(config, trust_architecture: bool = False) -> AttentionLayout:
    """The layout of a decoder config, or `UnsupportedArchitectureError` saying why the engine cannot serve it."""
    model_type = getattr(config, "model_type", "?")
    layers = config.num_hidden_layers
    declared = getattr(config, "layer_types", None)
    other = sorted({t for t in declared or () if t not in ATTENTION_LAYERS})
    if other:
        raise UnsupportedArchitectureError(
            f"{model_type!r} models have {', '.join(map(repr, other))} layers: compound's engine computes only "
            "attention layers against its own K/V memory, so it would give wrong output. Serve this model with "
            "transformers directly (model.generate) or vLLM."
        )
    for attr in ("attention_chunk_size", "ssm_cfg", "mamba_d_state", "linear_attn_config"):
        if getattr(config, attr, None):
            raise UnsupportedArchitectureError(
                f"{model_type!r} models use `{attr}` (chunked, state-space or linear attention), which compound's "
                "engine does not reproduce. Serve this model with transformers directly (model.generate) or vLLM."
            )
    window = getattr(config, "sliding_window", None)
    if declared is not None:
        layer_types = tuple(declared)
    else:  # Mistral, Phi-3: a window set in the config applies to every layer
        layer_types = ("sliding_attention" if window else "full_attention",) * layers
    if "sliding_attention" in layer_types and not window:
        raise UnsupportedArchitectureError(f"{model_type!r} config has sliding-attention layers but no `sliding_window`")
    style = VERIFIED.get(model_type)
    if style is None:
        if not trust_architecture:
            raise UnsupportedArchitectureError(
                f"compound's engine serves only architectures verified token-for-token against HF generate "
                f"({', '.join(sorted(VERIFIED))}); {model_type!r} is not one of them. If it is a plain decoder "
                "(causal or sliding-window attention, standard K/V cache), pass "
                "EngineConfig(trust_architecture=True) and compare a few outputs with model.generate; otherwise "
                "serve it with transformers directly."
            )
        style = "by_layer_type" if declared is not None else "tensor"
    return AttentionLayout(layer_types, window if "sliding_attention" in layer_types else None, style)
