"""Who runs this step: admission into KV slots, chunked prefill under a token budget, decode, finish, preemption,
and backing off after out-of-memory errors (and growing back once memory allows)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from compound.lm.kv import PrefixCache, SlotKVCache
from compound.lm.sequence import Sequence, Status

GROW_AFTER_STEPS = 16  # calm steps before the slot cap or the prefill budget grows back one notch
MAX_GROW_AFTER_STEPS = 256


class Scheduler:
    """Continuous batching over a fixed number of KV slots.

    Running sequences always occupy slots 0..n-1 (a finished sequence's slot is refilled by the last one), so the
    decode batch is one contiguous view of the cache. Each step prefills at most `max_prefill_tokens` prompt tokens,
    so a long newcomer is split over several steps instead of stalling the running decodes.

    Out of memory, the scheduler shrinks: the prefill budget halves, or the newest sequence is preempted and the slot
    cap drops to what still ran, so the preempted sequence is not re-admitted into the same failure next step. After
    `grow_after` calm steps the cap and the budget grow back one notch; each new OOM doubles `grow_after` and each
    notch that holds halves it again, so under persistent pressure the engine settles at what fits (one sequence at a
    time if it must) instead of livelocking, and once the pressure is gone it is back to full size within a few
    hundred steps.
    """

    def __init__(self, kv: SlotKVCache, prefix: PrefixCache, max_prefill_tokens: int, min_prefill_tokens: int = 16,
                 adapters=None):
        self.kv, self.prefix = kv, prefix
        self.adapters = adapters  # compound.lm.lora.ServedAdapters: LoRA residency and K/V-prefix adapters
        self.prefill_limit = self.max_prefill_tokens = max_prefill_tokens
        self.min_prefill_tokens = min(min_prefill_tokens, max_prefill_tokens)
        self.slot_cap = kv.num_slots
        self.grow_after = GROW_AFTER_STEPS
        self._calm_steps = 0
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []  # running[i].slot == i

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def admit(self, check: Callable[[Sequence], None] | None = None) -> list[tuple[Sequence, BaseException]]:
        """Move waiting sequences into free slots, loading any cached prompt prefix into the slot.

        A newcomer whose next uncached block is being prefilled right now by another sequence (concurrent calls of one
        DSPy predictor arrive together) waits one step and then reuses those blocks instead of computing them again.
        A sequence whose admission raises (or `check(seq)`) is left out and returned with its error.
        """
        in_flight = {h for s in self.running if s.num_computed < len(s.prompt_ids) for h in s.block_hashes}
        deferred, failed = [], []
        while self.waiting and len(self.running) < min(self.slot_cap, self.kv.num_slots):
            seq = self.waiting.popleft()
            try:
                if check is not None:
                    check(seq)
                if self.adapters is not None and not self.adapters.reserve(seq, self.running):
                    deferred.append(seq)  # every LoRA slot serves running sequences: wait for one to finish
                    continue
                if seq.block_hashes is None:
                    seq.block_hashes = self.prefix.block_hashes(seq.prompt_ids, seq.adapter) if self.prefix.num_blocks else []
                hashes = seq.block_hashes
                cached = self.prefix.cached_blocks(hashes, seq.prompt_ids)
                if cached < len(hashes) and hashes[cached] in in_flight:
                    deferred.append(seq)
                    continue
                slot = len(self.running)
                seq.num_computed = self.prefix.load_into(hashes, seq.tokens, slot)
                if self.adapters is not None:  # a prefix-tuning adapter's K/V (virtual positions 0..P-1)
                    seq.num_computed = self.adapters.load_prefix(seq, self.kv, slot)
            except Exception as exc:  # noqa: BLE001 - this request alone fails; the caller types the error
                failed.append((seq, exc))
                continue
            in_flight.update(hashes)
            seq.slot, seq.status = slot, Status.RUNNING
            if seq.admitted is None:
                seq.admitted = time.perf_counter()
            seq.prefix_hit_tokens = max(seq.prefix_hit_tokens, min(seq.num_computed, len(seq.prompt_ids)))
            self.running.append(seq)
        self.waiting.extendleft(reversed(deferred))
        return failed

    def prefill_batch(self) -> tuple[list[Sequence], list[int]]:
        """Sequences with more than one uncomputed token and the chunk each computes this step."""
        seqs, chunks, budget = [], [], self.max_prefill_tokens
        for seq in self.running:
            if seq.num_uncomputed > 1 and seq.finish_reason is None and budget > 0:
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

    def remove(self, seq: Sequence) -> None:
        """Take a sequence out wherever it is (an abort): its slot, if it holds one, is free at once."""
        if seq.status is Status.RUNNING:
            self.finish(seq)
        elif seq.status is Status.WAITING:
            try:
                self.waiting.remove(seq)
            except ValueError:
                pass
            seq.status = Status.FINISHED

    # ---- out of memory -------------------------------------------------------------------------------------------
    def shrink_prefill(self) -> bool:
        """Halve the prefill budget; False when it is already at its floor."""
        self._note_oom()
        if self.max_prefill_tokens <= self.min_prefill_tokens:
            return False
        self.max_prefill_tokens = max(self.min_prefill_tokens, self.max_prefill_tokens // 2)
        return True

    def preempt_newest(self) -> Sequence | None:
        """Give back the slot of the most recently admitted sequence and cap the slots at what is left running.

        The sequence keeps its output and recomputes its K/V when re-admitted. None when only one sequence runs.
        """
        self._note_oom()
        if len(self.running) < 2:
            return None
        seq = max(self.running, key=lambda s: s.admitted or 0.0)
        self.finish(seq)
        seq.status, seq.num_computed = Status.WAITING, 0
        self.waiting.appendleft(seq)
        self.slot_cap = len(self.running)
        return seq

    def _note_oom(self) -> None:
        self._calm_steps = 0
        self.grow_after = min(self.grow_after * 2, MAX_GROW_AFTER_STEPS)

    def step_succeeded(self) -> None:
        """A step without OOM: after `grow_after` of them, grow the slot cap and the prefill budget back a notch."""
        if self.slot_cap >= self.kv.num_slots and self.max_prefill_tokens >= self.prefill_limit:
            self.grow_after, self._calm_steps = GROW_AFTER_STEPS, 0
            return
        self._calm_steps += 1
        if self._calm_steps >= self.grow_after:  # the last notch held: take the next one, and sooner
            self._calm_steps = 0
            self.grow_after = max(GROW_AFTER_STEPS, self.grow_after // 2)
            self.slot_cap = min(self.kv.num_slots, self.slot_cap + 1)
            self.max_prefill_tokens = min(self.prefill_limit, self.max_prefill_tokens * 2)

    def fail_all(self) -> list[Sequence]:
        """Remove every sequence (engine shutdown or crash) and return them."""
        seqs = [*self.running, *self.waiting]
        self.running.clear()
        self.waiting.clear()
        return seqs
