"""Key/value memory: one slot per running sequence, plus a pool of shared prompt-prefix blocks.

Layout: `kv` is one tensor (L, 2, S, H, T + 1, D) — layers, key/value, slots, KV heads, positions, head dim. Running
sequences occupy slots 0..n-1, so a decode step attends to the plain view `kv[l, :, :n, :, :kv_len]` (no gather).
Position T is a scratch column: padding tokens write there and nothing ever reads it.
"""

from __future__ import annotations

from collections import OrderedDict

import torch


class SlotKVCache:
    """Preallocated per-slot K/V for every layer; hands the HF model a cache view per forward pass."""

    def __init__(self, num_layers, num_slots, num_kv_heads, max_len, head_dim, dtype, device):
        self.num_slots, self.max_len = num_slots, max_len
        self.kv = torch.zeros(num_layers, 2, num_slots, num_kv_heads, max_len + 1, head_dim, dtype=dtype, device=device)

    @property
    def nbytes(self) -> int:
        return self.kv.numel() * self.kv.element_size()

    @property
    def scratch(self) -> int:
        return self.max_len

    def move_slot(self, src: int, dst: int, length: int) -> None:
        """Copy a sequence's first `length` positions from slot `src` to slot `dst` (compaction after a finish)."""
        self.kv[:, :, dst, :, :length] = self.kv[:, :, src, :, :length]

    def view(self, rows: list[int], write_pos: torch.Tensor, kv_len: int) -> "KVView":
        return KVView(self.kv, rows, write_pos, kv_len)


class KVView:
    """What the HF attention layers see as `cache`: `update` stores the new K/V at each row's own positions and
    returns the rows' K/V up to `kv_len`.

    rows: slot of each batch row; write_pos: (B, Q) absolute position of each query token (scratch for padding).
    """

    is_compileable = False

    def __init__(self, kv: torch.Tensor, rows: list[int] | None, write_pos: torch.Tensor, kv_len: int,
                 rows_tensor: torch.Tensor | None = None):
        self.kv, self.write_pos, self.kv_len = kv, write_pos, kv_len
        if rows is None:  # CUDA-graph capture: slots 0..B-1, index tensor prebuilt (no host copy while capturing)
            self.rows, self._span = rows_tensor, slice(0, rows_tensor.shape[0])
        else:
            self.rows = torch.tensor(rows, device=kv.device)
            # contiguous rows (always true while decoding) read a view instead of gathering a copy
            contiguous = rows == list(range(rows[0], rows[0] + len(rows)))
            self._span = slice(rows[0], rows[0] + len(rows)) if contiguous else None
        self._row_index = self.rows[:, None].expand_as(write_pos)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs):
        k_cache, v_cache = self.kv[layer_idx, 0], self.kv[layer_idx, 1]  # (S, H, T+1, D)
        # key_states: (B, H, Q, D) -> index_put wants (B, Q, H, D) at [row, :, pos]
        k_cache[self._row_index, :, self.write_pos] = key_states.transpose(1, 2)
        v_cache[self._row_index, :, self.write_pos] = value_states.transpose(1, 2)
        if self._span is not None:
            return k_cache[self._span, :, : self.kv_len], v_cache[self._span, :, : self.kv_len]
        return (
            k_cache[:, :, : self.kv_len].index_select(0, self.rows),
            v_cache[:, :, : self.kv_len].index_select(0, self.rows),
        )

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.kv_len


def attention_mask(query_pos: torch.Tensor, kv_len: int, dtype: torch.dtype) -> torch.Tensor:
    """Additive mask (B, 1, Q, kv_len): a query at position p sees keys 0..p of its own row.

    Padding queries carry position -1 and see key 0 only, so no row is all -inf (that would give NaN).
    """
    keys = torch.arange(kv_len, device=query_pos.device)
    allowed = keys[None, None, :] <= query_pos.clamp(min=0)[:, :, None]  # (B, Q, kv_len)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=query_pos.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[:, None]


class PrefixCache:
    """K/V of prompt blocks already computed, keyed by a hash of the whole token prefix up to each block.

    Every call of one DSPy predictor starts with the same system prompt and demos; those blocks are copied into the new
    sequence's slot instead of being prefilled again. Blocks are shared between prompts (no duplicates) and evicted
    least-recently-used. The adapter is part of the hash: the same tokens give other K/V under another adapter.
    """

    def __init__(self, kv: SlotKVCache, block_size: int, num_blocks: int):
        L, _, _, H, _, D = kv.kv.shape
        self.kv, self.block_size, self.num_blocks = kv, block_size, num_blocks
        self.pool = torch.zeros(num_blocks, L, 2, H, block_size, D, dtype=kv.kv.dtype, device=kv.kv.device)
        self._index: OrderedDict[int, int] = OrderedDict()  # prefix hash -> pool block, LRU order
        self._free = list(range(num_blocks - 1, -1, -1))

    @property
    def nbytes(self) -> int:
        return self.pool.numel() * self.pool.element_size()

    def block_hashes(self, tokens: list[int], adapter: str | None) -> list[int]:
        """One hash per full block of `tokens`, each covering the whole prefix up to the end of its block."""
        h, out, bs = hash(("compound-prefix", adapter)), [], self.block_size
        for j in range(len(tokens) // bs):
            h = hash((h, tuple(tokens[j * bs : (j + 1) * bs])))
            out.append(h)
        return out

    def cached_blocks(self, hashes: list[int]) -> int:
        """How many leading blocks of a prompt are in the cache."""
        n = 0
        while n < len(hashes) and hashes[n] in self._index:
            n += 1
        return n

    def load_into(self, hashes: list[int], n_tokens: int, slot: int) -> int:
        """Copy the longest cached prefix into `slot`; returns how many tokens it covers.

        At most `(n_tokens - 1)` tokens are reused: the last one is always computed, its logits give the next token.
        """
        m = min(self.cached_blocks(hashes), (n_tokens - 1) // self.block_size)
        if m == 0:
            return 0
        for h in reversed(hashes[:m]):  # parents end up most recent, so they outlive their children
            self._index.move_to_end(h)
        idx = torch.tensor([self._index[h] for h in hashes[:m]], device=self.pool.device)
        got = self.pool.index_select(0, idx)  # (m, L, 2, H, bs, D)
        _, L, _, H, bs, D = got.shape
        n = m * bs
        self.kv.kv[:, :, slot, :, :n] = got.permute(1, 2, 3, 0, 4, 5).reshape(L, 2, H, n, D)
        return n

    def store_from(self, hashes: list[int], slot: int) -> None:
        """Remember the blocks `hashes` of the sequence in `slot` (their K/V must be computed)."""
        if not self.num_blocks:
            return
        bs = self.block_size
        for j, h in enumerate(hashes):
            if h in self._index:
                self._index.move_to_end(h)
                continue
            if self._free:
                b = self._free.pop()
            else:
                _, b = self._index.popitem(last=False)
            self.pool[b] = self.kv.kv[:, :, slot, :, j * bs : (j + 1) * bs]
            self._index[h] = b

    def __len__(self) -> int:
        return len(self._index)
