"""Key/value memory: one slot per running sequence, plus a pool of shared prompt-prefix blocks.

Layout: `kv` is one tensor (L, 2, S, H, T + 1, D) — layers, key/value, slots, KV heads, positions, head dim. Running
sequences occupy slots 0..n-1, so a decode step attends to the plain view `kv[l, :, :n, :, :kv_len]` (no gather).
Position T is a scratch column: padding tokens write there and nothing ever reads it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

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

    def release(self) -> None:
        """Drop the memory (a stopped engine); the cache is unusable afterwards."""
        self.kv = self.kv.new_empty(0)


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


@dataclass(slots=True)
class _Block:
    pool_index: int
    parent: int | None  # key of the block before it in the prompt (None: the first block)
    tokens: tuple[int, ...]
    children: int = 0  # cached blocks whose parent this is; only childless blocks (leaves) are evicted


class PrefixCache:
    """K/V of prompt blocks already computed, shared between prompts that start the same way.

    Every call of one DSPy predictor starts with the same system prompt and demos; those blocks are copied into the new
    sequence's slot instead of being prefilled again. A block is keyed by a hash of the whole prefix up to its end,
    and a match is checked against the block's own tokens and its parent, so a hash collision is a miss, never
    another prompt's K/V. Blocks form chains (a tree over shared prefixes); eviction takes the least recently used
    leaf, so a chain shrinks from its end and no cached block is ever stranded without its parent.
    The adapter is part of the root hash: the same tokens give other K/V under another adapter.
    """

    def __init__(self, kv: SlotKVCache, block_size: int, num_blocks: int):
        L, _, _, H, _, D = kv.kv.shape
        self.kv, self.block_size, self.num_blocks = kv, block_size, num_blocks
        self.pool = torch.zeros(num_blocks, L, 2, H, block_size, D, dtype=kv.kv.dtype, device=kv.kv.device)
        self._blocks: dict[int, _Block] = {}
        self._leaves: OrderedDict[int, None] = OrderedDict()  # childless blocks, least recently used first
        self._free = list(range(num_blocks - 1, -1, -1))

    @property
    def nbytes(self) -> int:
        return self.pool.numel() * self.pool.element_size()

    def block_hashes(self, tokens: list[int], adapter: str | None) -> list[int]:
        """One key per full block of `tokens`, each covering the whole prefix up to the end of its block."""
        h, out, bs = hash(("compound-prefix", adapter)), [], self.block_size
        for j in range(len(tokens) // bs):
            h = hash((h, tuple(tokens[j * bs : (j + 1) * bs])))
            out.append(h)
        return out

    def _match(self, hashes: list[int], tokens: list[int], j: int) -> _Block | None:
        block = self._blocks.get(hashes[j])
        bs = self.block_size
        if block is None or block.parent != (hashes[j - 1] if j else None):
            return None
        return block if block.tokens == tuple(tokens[j * bs : (j + 1) * bs]) else None

    def cached_blocks(self, hashes: list[int], tokens: list[int]) -> int:
        """How many leading blocks of a prompt are in the cache (checked token by token)."""
        n = 0
        while n < len(hashes) and self._match(hashes, tokens, n) is not None:
            n += 1
        return n

    def _touch(self, hashes: list[int]) -> None:
        for h in hashes:  # root to leaf: only leaves are ordered, parents outlive them by construction
            if h in self._leaves:
                self._leaves.move_to_end(h)

    def load_into(self, hashes: list[int], tokens: list[int], slot: int) -> int:
        """Copy the longest cached prefix of `tokens` into `slot`; returns how many tokens it covers.

        At most `len(tokens) - 1` tokens are reused: the last one is always computed, its logits give the next token.
        """
        m = min(self.cached_blocks(hashes, tokens), (len(tokens) - 1) // self.block_size)
        if m == 0:
            return 0
        self._touch(hashes[:m])
        idx = torch.tensor([self._blocks[h].pool_index for h in hashes[:m]], device=self.pool.device)
        got = self.pool.index_select(0, idx)  # (m, L, 2, H, bs, D)
        _, L, _, H, bs, D = got.shape
        n = m * bs
        self.kv.kv[:, :, slot, :, :n] = got.permute(1, 2, 3, 0, 4, 5).reshape(L, 2, H, n, D)
        return n

    def store_from(self, hashes: list[int], tokens: list[int], slot: int) -> None:
        """Remember the blocks `hashes` of `tokens`, whose K/V sit computed in `slot`."""
        if not self.num_blocks:
            return
        bs = self.block_size
        for j, h in enumerate(hashes):
            if self._match(hashes, tokens, j) is not None:
                self._touch([h])
                continue
            if h in self._blocks:  # a hash collision with another prefix: keep the cached one, stop here
                return
            parent = self._blocks.get(hashes[j - 1]) if j else None
            if j and parent is None:  # the parent could not be stored: its children must not be either
                return
            if parent is not None:  # pin the parent first, so making room never evicts it
                parent.children += 1
                self._leaves.pop(hashes[j - 1], None)
            b = self._allocate()
            if b is None:
                if parent is not None:
                    self._unlink_child(hashes[j - 1])
                return
            self.pool[b] = self.kv.kv[:, :, slot, :, j * bs : (j + 1) * bs]
            self._blocks[h] = _Block(b, hashes[j - 1] if j else None, tuple(tokens[j * bs : (j + 1) * bs]))
            self._leaves[h] = None

    def _allocate(self) -> int | None:
        if self._free:
            return self._free.pop()
        if not self._leaves:
            return None
        key, _ = self._leaves.popitem(last=False)
        block = self._blocks.pop(key)
        if block.parent is not None:
            self._unlink_child(block.parent)
        return block.pool_index

    def _unlink_child(self, parent_key: int) -> None:
        parent = self._blocks[parent_key]
        parent.children -= 1
        if parent.children == 0:  # a leaf again; it was last used when its child was, so it goes first
            self._leaves[parent_key] = None
            self._leaves.move_to_end(parent_key, last=False)

    def check(self) -> None:
        """Assert the bookkeeping is whole: every block is free or cached, every cached block's parent is cached,
        child counts and leaves agree. The reliability tests call it after every storm."""
        assert len(self._free) + len(self._blocks) == self.num_blocks, "a K/V block leaked"
        assert len(set(self._free) | {b.pool_index for b in self._blocks.values()}) == self.num_blocks
        counts: dict[int, int] = {}
        for b in self._blocks.values():
            if b.parent is not None:
                assert b.parent in self._blocks, "a cached block lost its parent"
                counts[b.parent] = counts.get(b.parent, 0) + 1
        for key, b in self._blocks.items():
            assert b.children == counts.get(key, 0) and ((b.children == 0) == (key in self._leaves))

    def release(self) -> None:
        self.pool = self.pool.new_empty(0)
        self._blocks.clear()
        self._leaves.clear()
        self._free, self.num_blocks = [], 0

    def __len__(self) -> int:
        return len(self._blocks)
