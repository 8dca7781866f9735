"""One forward pass of the HF model over a batch of sequences, prefill or decode, against the slot KV cache."""

from __future__ import annotations

import inspect
import time

import torch

from compound.lm.architecture import AttentionLayout
from compound.lm.cuda_graphs import DecodeGraphs
from compound.lm.kv import SlotKVCache
from compound.lm.sequence import Sequence


class ModelRunner:
    """Owns the model and the KV memory; turns a list of sequences into input tensors and logits.

    A prefill batch is left-padded so each row's last real token sits at the last column: only that column's logits
    are computed (`logits_to_keep=1`), which matters with 150k-entry vocabularies. Padding writes to the scratch
    column and is masked out. The attention masks come from the model's `AttentionLayout` (causal, or a sliding
    window per layer), so the model sees exactly the attention it was trained with.

    `forward(seqs, chunks)` is the one place a batch meets the model.
    """

    def __init__(self, model, kv: SlotKVCache, layout: AttentionLayout, cuda_graphs: bool = False, adapters=None):
        self.model, self.kv, self.layout = model, kv, layout
        self.adapters = adapters  # compound.lm.lora.ServedAdapters: each row's LoRA slot
        self._adapter_layout = adapters.layout_version if adapters is not None else 0
        self.device = next(model.parameters()).device
        self.dtype = kv.kv.dtype
        params = inspect.signature(model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self.graphs = (
            DecodeGraphs(model, kv, self._cache_kw, layout) if cuda_graphs and self.device.type == "cuda" else None
        )

    @torch.inference_mode()
    def forward(self, seqs: list[Sequence], chunks: list[int]) -> tuple[torch.Tensor, float]:
        """Compute K/V for the next `chunks[i]` uncomputed tokens of each sequence.

        Returns the logits of each row's last computed token (B, V) and the seconds the pass took.
        """
        t0 = time.perf_counter()
        q = max(chunks)
        if q == 1:  # decode: one token per row, no padding
            ids = torch.tensor([[s.token_at(s.num_computed)] for s in seqs])
            pos = torch.tensor([[s.num_computed] for s in seqs])
            kv_len = int(pos.max()) + 1
        else:
            ids = torch.zeros(len(seqs), q, dtype=torch.long)
            pos = torch.full((len(seqs), q), -1, dtype=torch.long)
            kv_len = 1
            for i, (seq, n) in enumerate(zip(seqs, chunks)):
                start = seq.num_computed
                ids[i, q - n :] = torch.tensor(seq.tokens[start : start + n])
                pos[i, q - n :] = torch.arange(start, start + n)
                kv_len = max(kv_len, start + n)
        ids, pos = ids.to(self.device, non_blocking=True), pos.to(self.device, non_blocking=True)
        rows = [s.slot for s in seqs]
        if self.adapters is not None:
            self.adapters.set_rows(seqs)
            if self.graphs is not None and self.adapters.layout_version != self._adapter_layout:
                self.graphs.graphs.clear()  # captured before these LoRA layers or buffers existed
                self._adapter_layout = self.adapters.layout_version
        if self.graphs is not None and self.graphs.enabled and q == 1 and rows == list(range(len(rows))):
            logits = self.graphs.run(ids, pos, kv_len, lambda: self._eager(ids, pos, rows, kv_len))
        else:
            logits = self._eager(ids, pos, rows, kv_len)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return logits, time.perf_counter() - t0

    def _eager(self, ids: torch.Tensor, pos: torch.Tensor, rows: list[int], kv_len: int) -> torch.Tensor:
        write_pos = torch.where(pos >= 0, pos, self.kv.scratch)
        out = self.model(
            input_ids=ids,
            position_ids=pos.clamp(min=0),
            attention_mask=self.layout.masks(pos, kv_len, self.dtype),
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_kw: self.kv.view(rows, write_pos, kv_len)},
        )
        return out.logits[:, -1, :]
