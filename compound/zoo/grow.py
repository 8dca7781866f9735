"""Function-preserving growth of a Llama model: wider (more heads, a wider MLP) and deeper, same outputs at step 0.

Why the zoo grows "small" out of "tiny" instead of training it from scratch: on 2 CPU cores the build budget buys
~2,000 optimizer steps, and the harder tasks (copying an order number, converting units) only click after ~1,000 steps
whatever the model's size, so a larger model trained from scratch would still sit on the plateau when time runs out.
Grown from tiny, small starts where tiny stopped and spends its own budget on the new capacity; it can only get
better than tiny, which is the gap routing exploits. (Net2Net, Chen et al. 2016; stacking, Du et al. 2024.)

How the outputs are preserved: every new weight that *writes* into the residual stream (new embedding columns, the
o_proj/down_proj rows of new dimensions, the o_proj/down_proj columns of new heads and MLP units, whole new layers'
o_proj/down_proj) starts at zero, so the new dimensions hold zeros; RMSNorm weights are scaled by sqrt(d_old/d_new)
(and its eps by d_old/d_new) because the RMS now averages over the zero dimensions too. Weights that only *read* (q/k/v, gate/up of new units)
keep their fresh random init, which breaks the symmetry so that training uses them.

Example:
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> base = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
    ...                                      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2))
    >>> wide = grow_llama(base, hidden_size=48, num_attention_heads=3, intermediate_size=96, num_hidden_layers=2)
    >>> wide.config.hidden_size, wide.config.num_hidden_layers
    (48, 2)
"""

from __future__ import annotations

import math


def grow_llama(model, *, hidden_size: int, num_attention_heads: int, intermediate_size: int, num_hidden_layers: int):
    """A new `LlamaForCausalLM` with the given larger shape that computes exactly what `model` computes.

    The head size stays the same (hidden_size / num_attention_heads must equal the old head size, so RoPE is
    unchanged); new layers are appended on top as identities. New random weights come from torch's global RNG, so
    seed it for a deterministic result.
    """
    import torch
    from transformers import LlamaForCausalLM

    old = model.config
    head_dim = getattr(old, "head_dim", None) or old.hidden_size // old.num_attention_heads
    if old.num_key_value_heads != old.num_attention_heads:
        raise ValueError("grow_llama grows multi-head attention models only (num_key_value_heads == num_attention_heads)")
    if hidden_size != num_attention_heads * head_dim:
        raise ValueError(f"hidden_size {hidden_size} must be num_attention_heads x the old head size {head_dim}")
    shrinks = {k: (getattr(old, k), v) for k, v in [
        ("hidden_size", hidden_size), ("num_attention_heads", num_attention_heads),
        ("intermediate_size", intermediate_size), ("num_hidden_layers", num_hidden_layers)] if v < getattr(old, k)}
    if shrinks:
        raise ValueError(f"grow_llama only grows; these would shrink (old, new): {shrinks}")

    config = type(old)(**{
        **old.to_dict(), "hidden_size": hidden_size, "num_attention_heads": num_attention_heads,
        "num_key_value_heads": num_attention_heads, "intermediate_size": intermediate_size,
        "num_hidden_layers": num_hidden_layers, "head_dim": head_dim,
        # mean(x^2) over the wider vector is d_old/d_new of the old one; scaling eps alike keeps the norms exact
        "rms_norm_eps": old.rms_norm_eps * old.hidden_size / hidden_size,
    })
    grown = LlamaForCausalLM(config).to(dtype=next(model.parameters()).dtype)
    norm_scale = math.sqrt(old.hidden_size / hidden_size)
    source = model.state_dict()
    writes = ("o_proj.weight", "down_proj.weight", "embed_tokens.weight")
    with torch.no_grad():
        for name, param in grown.named_parameters():
            if name not in source:  # a whole new layer: an identity on the residual stream until trained
                if name.endswith(writes):
                    param.zero_()
                continue
            weight = source[name]
            if "norm" in name:
                param.fill_(norm_scale)
                param[: weight.shape[0]] = weight * norm_scale
                continue
            if name.endswith(writes):
                param.zero_()
            param[: weight.shape[0], : weight.shape[1]] = weight
    return grown
