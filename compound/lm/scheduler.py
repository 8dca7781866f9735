"""Who runs this step: admission into KV slots, chunked prefill under a token budget, decode, finish, preemption."""

from __future__ import annotations

import time
from collections import deque

from compound.lm.kv import PrefixCache, SlotKVCache
from compound.lm.sequence import Sequence, Status


class Scheduler:
    """Continuous batching over a fixed number of KV slots.

    Running sequences always occupy slots 0..n-1 (a finished sequence's slot is refilled by the last one), so the
    decode batch is one contiguous view of the cache. Each step prefills at most `max_prefill_tokens` prompt tokens,
    so a long newcomer is split over several steps instead of stalling the running decodes.
    """

    def __init__(self, kv: SlotKVCache, prefix: PrefixCache, max_prefill_tokens: int, adapters=None):
        self.kv, self.prefix = kv, prefix
        self.adapters = adapters  # compound.lm.lora.ServedAdapters: LoRA residency and K/V-prefix adapters
        self.max_prefill_tokens = max_prefill_tokens
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []  # running[i].slot == i

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def admit(self) -> None:
        """Move waiting sequences into free slots, loading any cached prompt prefix into the slot.

        A newcomer whose next uncached block is being prefilled right now by another sequence (concurrent calls of one
        DSPy predictor arrive together) waits one step and then reuses those blocks instead of computing them again.
        """
        in_flight = {h for s in self.running if s.num_computed < len(s.prompt_ids) for h in s.block_hashes}
        deferred = []
        while self.waiting and len(self.running) < self.kv.num_slots:
            seq = self.waiting.popleft()
            if self.adapters is not None and not self.adapters.reserve(seq, self.running):
                deferred.append(seq)  # every LoRA slot serves running sequences: wait for one to finish
                continue
            if seq.block_hashes is None:
                seq.block_hashes = self.prefix.block_hashes(seq.prompt_ids, seq.adapter) if self.prefix.num_blocks else []
            hashes = seq.block_hashes
            cached = self.prefix.cached_blocks(hashes)
            if cached < len(hashes) and hashes[cached] in in_flight:
                deferred.append(seq)
                continue
            in_flight.update(hashes)
            seq.slot, seq.status = len(self.running), Status.RUNNING
            if seq.admitted is None:
                seq.admitted = time.perf_counter()
            seq.num_computed = self.prefix.load_into(hashes, seq.num_tokens, seq.slot)
            seq.prefix_hit_tokens = max(seq.prefix_hit_tokens, min(seq.num_computed, len(seq.prompt_ids)))
            if self.adapters is not None:
                seq.num_computed = self.adapters.load_prefix(seq, self.kv)  # a prefix-tuning adapter's K/V
            self.running.append(seq)
        self.waiting.extendleft(reversed(deferred))

    def prefill_batch(self) -> tuple[list[Sequence], list[int]]:
        """Sequences with more than one uncomputed token and the chunk each computes this step."""
        seqs, chunks, budget = [], [], self.max_prefill_tokens
        for seq in self.running:
            if seq.num_uncomputed > 1 and budget > 0:
                n = min(seq.num_uncomputed, budget)
                seqs.append(seq)
                chunks.append(n)
                budget -= n
        return seqs, chunks

    def decode_batch(self) -> list[Sequence]:
        return [seq for seq in self.running if seq.num_uncomputed == 1 and seq.finish_reason is None]

    def finish(self, seq: Sequence) -> None:
        """Free the sequence's slot; the last running sequence moves into it to keep slots contiguous."""
        last = self.running.pop()
        if last is not seq:
            self.kv.move_slot(last.slot, seq.slot, last.num_computed)
            last.slot = seq.slot
            self.running[seq.slot] = last
        seq.status, seq.slot = Status.FINISHED, -1

    def preempt_newest(self) -> Sequence | None:
        """Give back the slot of the most recently admitted sequence; it recomputes its K/V when re-admitted."""
        if len(self.running) < 2:
            return None
        seq = max(self.running, key=lambda s: s.admitted or 0.0)
        self.finish(seq)
        seq.status, seq.num_computed = Status.WAITING, 0
        self.waiting.appendleft(seq)
        return seq

    def fail_all(self) -> list[Sequence]:
        """Remove every sequence (engine shutdown or crash) and return them."""
        seqs = [*self.running, *self.waiting]
        self.running.clear()
        self.waiting.clear()
        return seqs
