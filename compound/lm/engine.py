"""The continuous-batching engine: a scheduler thread owns the model; any thread or task submits requests.

    engine = Engine(model, tokenizer)
    future = engine.submit(prompt_ids, SamplingParams(max_tokens=32))
    future.result().text
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
from concurrent.futures import Future
import torch
from dspy.lm15 import ContextLengthError

from compound.lm.config import EngineConfig, kv_shape
from compound.lm.kv import PrefixCache, SlotKVCache
from compound.lm.lora import served_adapters
from compound.lm.runner import ModelRunner
from compound.lm.sampling import SamplingParams, choose_tokens, make_generator
from compound.lm.scheduler import Scheduler
from compound.lm.sequence import Result, Sequence, TextTracker
from compound.lm.stats import EngineStats, StatsRecorder

log = logging.getLogger("compound.lm")


class EngineDeadError(RuntimeError):
    """The engine's scheduler thread stopped on an error; every pending request fails with it as the cause."""


class EngineClosedError(RuntimeError):
    """The engine was closed; pending and new requests fail with this."""


def _eos_ids(model, tokenizer) -> frozenset[int]:
    ids = set()
    for source in (getattr(model, "generation_config", None), tokenizer):
        eos = getattr(source, "eos_token_id", None)
        ids.update([eos] if isinstance(eos, int) else eos or [])
    return frozenset(ids)


class Engine:
    """Serves one loaded model to any number of threads and asyncio tasks through continuous batching.

    Example:
        >>> engine = Engine(model, tokenizer)                                      # doctest: +SKIP
        >>> engine.generate("Hello", SamplingParams(max_tokens=8)).text            # doctest: +SKIP
    """

    def __init__(self, model, tokenizer, config: EngineConfig | None = None, name: str = "model"):
        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name
        self.device = next(model.parameters()).device
        self.config = (config or EngineConfig()).resolved(model, self.device)
        layers, kv_heads, head_dim = kv_shape(model.config)
        c = self.config
        self.kv = SlotKVCache(layers, c.max_batch_size, kv_heads, c.max_seq_len, head_dim, model.dtype, self.device)
        self.prefix = PrefixCache(self.kv, c.prefix_block_size, c.prefix_cache_tokens // c.prefix_block_size)
        self.adapters = served_adapters(model, rows=c.max_batch_size)  # LoRA/prefix adapters mixed into batches
        self.scheduler = Scheduler(self.kv, self.prefix, c.max_prefill_tokens, self.adapters)
        self.runner = ModelRunner(model, self.kv, cuda_graphs=c.cuda_graphs, adapters=self.adapters)
        self.eos_ids = _eos_ids(model, tokenizer)
        self._stats = StatsRecorder()
        self._stats.set(kv_cache_bytes=self.kv.nbytes + self.prefix.nbytes)
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._wake = threading.Event()
        self._closed = False
        self._stopped = False  # set under _lock once the thread will take no more requests
        self._lock = threading.Lock()
        self._dead: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name=f"compound-engine-{name}", daemon=True)
        self._thread.start()

    # ---- public API -------------------------------------------------------------------------------------------
    def submit(
        self, prompt_ids: list[int], params: SamplingParams, adapter: str | None = None, stream: bool = False
    ) -> Sequence:
        """Queue a request from any thread; `seq.future` resolves to a `Result` (or the request's error)."""
        if self._dead is not None:
            raise EngineDeadError(f"engine {self.name!r} stopped after an error; load the model again") from self._dead
        if self._closed:
            raise EngineClosedError(f"engine {self.name!r} is closed; create a new one with compound.LM(...)")
        seq = self.new_sequence(prompt_ids, params, adapter, stream)
        with self._lock:
            if self._stopped:
                raise EngineClosedError(f"engine {self.name!r} is closed; create a new one with compound.LM(...)")
            self._stats.update(requests_total=1, prompt_tokens=len(prompt_ids))
            self._inbox.put(seq)
        self._wake.set()
        return seq

    def new_sequence(
        self, prompt_ids: list[int], params: SamplingParams, adapter: str | None = None, stream: bool = False
    ) -> Sequence:
        """Check a request against this engine's limits and make its `Sequence` (not queued yet)."""
        if not prompt_ids:
            raise ValueError("empty prompt: give the model at least one token")
        adapter = self.adapters.resolve(adapter)  # the served version (None: the base model)
        # prefix/prompt tuning: P virtual positions whose K/V are copied in at admission (placeholder ids)
        prompt_ids = [0] * self.adapters.virtual_tokens(adapter) + list(prompt_ids)
        room = self.config.max_seq_len - len(prompt_ids)
        if room < 1:
            raise ContextLengthError(
                f"prompt of {len(prompt_ids)} tokens does not fit the context of {self.config.max_seq_len} tokens "
                f"of {self.name!r}; shorten the prompt (fewer demos) or raise EngineConfig(max_seq_len=...)"
            )
        if params.max_tokens > room:
            params = dataclasses.replace(params, max_tokens=room)
        return Sequence(
            prompt_ids=list(prompt_ids),
            params=params,
            adapter=adapter,
            tracker=TextTracker(self.tokenizer, prompt_ids, params.stop, incremental=stream),
            generator=make_generator(params, self.device),
            eos_ids=self.eos_ids,
            stream=queue.SimpleQueue() if stream else None,
        )

    def generate(self, prompt: str, params: SamplingParams | None = None) -> Result:
        """Blocking convenience for one raw-text prompt (no chat template)."""
        ids = self.tokenizer(prompt, add_special_tokens=True)["input_ids"]
        return self.submit(ids, params or SamplingParams()).future.result()

    def stats(self) -> EngineStats:
        s = self._stats.snapshot()
        s.prefix_cache_blocks = len(self.prefix)
        return s

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and self._dead is None

    def close(self, timeout: float = 10.0) -> None:
        """Stop the scheduler thread; requests still pending fail with `EngineClosedError`."""
        self._closed = True
        self._wake.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    # ---- scheduler thread ---------------------------------------------------------------------------------------
    def _loop(self) -> None:
        if self.device.type == "cpu":
            torch.set_num_threads(self.config.cpu_threads)
        try:
            while not self._closed:
                self._drain_inbox()
                if not self.scheduler.running and not self.scheduler.waiting:
                    self._wake.wait(0.5)
                    self._wake.clear()
                    continue
                self.step()
            err: BaseException = EngineClosedError(f"engine {self.name!r} was closed before this request finished")
        except BaseException as exc:  # a crash must fail every caller, never leave them waiting
            log.exception("engine %r stopped", self.name)
            self._dead = exc
            err = EngineDeadError(f"engine {self.name!r} stopped: {type(exc).__name__}: {exc}")
            err.__cause__ = exc
        with self._lock:
            self._stopped = True
        self._fail_all(err)

    def _drain_inbox(self) -> None:
        while True:
            try:
                self.scheduler.add(self._inbox.get_nowait())
            except queue.Empty:
                return

    def step(self) -> None:
        """One iteration: admit newcomers, prefill one chunk budget, decode every running sequence once."""
        sched = self.scheduler
        sched.admit()
        seqs, chunks = sched.prefill_batch()
        if seqs and self._run_guarded(seqs, chunks, prefill=True):
            self._stats.update(prefill_tokens_computed=sum(chunks))
        decode = sched.decode_batch()
        if decode:
            self._run_guarded(decode, [1] * len(decode), prefill=False)
        for seq in [s for s in sched.running if s.finish_reason is not None]:
            sched.finish(seq)
            self._resolve(seq)
        self._stats.set(requests_running=len(sched.running), queue_depth=len(sched.waiting))

    def _run_guarded(self, seqs: list[Sequence], chunks: list[int], prefill: bool) -> bool:
        """Run one forward pass; on CUDA OOM shrink the work (prefill budget, or preempt a sequence) and retry later."""
        try:
            logits, seconds = self.runner.forward(seqs, chunks)
        except torch.OutOfMemoryError as exc:
            self._on_oom(seqs, prefill, exc)
            return False
        share = seconds / len(seqs)
        ready, ready_rows = [], []
        for i, (seq, n) in enumerate(zip(seqs, chunks)):
            seq.device_s += share
            first_pass = seq.num_computed < len(seq.prompt_ids)
            seq.num_computed += n
            if first_pass and seq.num_computed >= len(seq.prompt_ids):
                self.prefix.store_from(seq.block_hashes, seq.slot)
            if seq.num_uncomputed == 0:
                ready.append(seq)
                ready_rows.append(i)
        if ready:
            rows = logits if len(ready_rows) == len(seqs) else logits[ready_rows]
            for seq, tok in zip(ready, choose_tokens(rows, [s.params for s in ready], [s.generator for s in ready])):
                seq.append(tok)
        if prefill:
            self._stats.update(generated_tokens=len(ready), device_busy_s=seconds)
        else:
            self._stats.decode_step(len(seqs), seconds)
        return True

    def _on_oom(self, seqs: list[Sequence], prefill: bool, exc: BaseException) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        self._stats.update(oom_retries=1)
        sched = self.scheduler
        if prefill and sched.max_prefill_tokens > self.config.prefix_block_size:
            sched.max_prefill_tokens //= 2
            log.warning("out of memory in prefill; prefill budget now %d tokens", sched.max_prefill_tokens)
        elif sched.preempt_newest() is not None:
            log.warning("out of memory; preempted one sequence, %d keep running", len(sched.running))
        else:  # a single sequence that does not fit: fail it alone, the engine lives on
            seq = seqs[0]
            sched.finish(seq)
            self._stats.update(errors=1)
            seq.future.set_exception(
                RuntimeError(
                    f"CUDA out of memory even for this request alone ({seq.num_tokens} tokens); "
                    "lower max_tokens, shorten the prompt or load the model in a smaller dtype"
                ).with_traceback(exc.__traceback__)
            )
            self._end_stream(seq)

    def _resolve(self, seq: Sequence) -> None:
        self._stats.update(requests_finished=1, prefill_tokens_saved=seq.prefix_hit_tokens)
        self._end_stream(seq)
        seq.future.set_result(seq.result())

    def _end_stream(self, seq: Sequence) -> None:
        if seq.stream is not None:
            seq.stream.put(None)

    def _fail_all(self, err: BaseException) -> None:
        self._drain_inbox()
        for seq in self.scheduler.fail_all():
            self._stats.update(errors=1)
            self._end_stream(seq)
            if not seq.future.done():
                seq.future.set_exception(err)

