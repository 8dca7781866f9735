"""Engine sizing: how many sequences, how long, how much KV memory, how many CPU threads."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import torch


@dataclass
class EngineConfig:
    """Sizes of the engine's batch and memory. `None` picks a default for the device and the model.

    Example:
        >>> EngineConfig(max_batch_size=8, max_seq_len=1024).max_batch_size
        8
    """

    max_batch_size: int | None = None  # sequences decoded together: up to 64 on CUDA, 32 on CPU, within kv_cache_gb
    max_seq_len: int | None = None  # prompt + output tokens per sequence: model limit capped at 4096 / 2048
    max_prefill_tokens: int | None = None  # prompt tokens computed per step: 2048 on CUDA, 512 on CPU
    prefix_block_size: int = 16
    prefix_cache_tokens: int | None = None  # K/V of shared prompt prefixes kept; 0 disables prefix reuse
    kv_cache_gb: float | None = None  # slots' K/V: 30% of free GPU memory on CUDA, 0.5 GB on CPU
    cpu_threads: int | None = None  # torch threads of the scheduler thread on CPU (see `resolved`)
    cuda_graphs: bool = True  # replay captured decode steps on CUDA (checked against eager on first use)
    trust_architecture: bool = False  # serve a model type no parity test covers (see compound.lm.architecture)

    def resolved(self, model, device: torch.device) -> "EngineConfig":
        """Fill every `None` for this model on this device."""
        cuda = device.type == "cuda"
        c = model.config
        limit = getattr(c, "max_position_embeddings", None) or 2048
        seq_len = min(self.max_seq_len or (4096 if cuda else 2048), limit)
        layers, kv_heads, head_dim = kv_shape(c)
        per_token = layers * 2 * kv_heads * head_dim * torch.finfo(model.dtype).bits // 8
        if self.kv_cache_gb is not None:
            budget = int(self.kv_cache_gb * 2**30)
        elif cuda:
            budget = int(0.3 * torch.cuda.mem_get_info(device)[0])
        else:
            budget = 2**29
        slots = self.max_batch_size or max(1, min(64 if cuda else 32, budget // (seq_len * per_token)))
        if self.max_seq_len is None and slots * seq_len * per_token > budget:  # not even one slot: shorten it
            seq_len = max(256, budget // (slots * per_token))
        prefix = self.prefix_cache_tokens
        if prefix is None:
            prefix = min(65536 if cuda else 8192, budget // (2 * per_token))
        return replace(
            self,
            max_batch_size=slots,
            max_seq_len=seq_len,
            max_prefill_tokens=self.max_prefill_tokens or (2048 if cuda else 512),
            prefix_cache_tokens=prefix,
            cpu_threads=self.cpu_threads or _default_cpu_threads(),
        )


def _default_cpu_threads() -> int:
    # Only the scheduler thread computes. On small machines OpenMP teams of 2+ threads stall each other whenever the
    # cores are shared (measured on 2 cores: 10-50x slower decode than with 1 thread), so stay single-threaded there.
    cores = os.cpu_count() or 1
    return 1 if cores <= 4 else min(8, cores // 2)


def kv_shape(config) -> tuple[int, int, int]:
    """(layers, KV heads, head dim) of a decoder config."""
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return config.num_hidden_layers, kv_heads, head_dim
