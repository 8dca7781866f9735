"""The continuous-batching engine: a scheduler thread owns the model; any thread or task submits requests.

    engine = Engine(model, tokenizer)
    seq = engine.submit(prompt_ids, SamplingParams(max_tokens=32))
    seq.future.result().text            # or seq.future.cancel() / engine.abort(seq.id)

A request costs only itself when it goes wrong: aborts free its slot at the next step; a fault in its own work
(sampling, a NaN logit row, detokenizing) fails it alone; a batched forward pass that raises is retried once and then
bisected to find the request(s) that fail even alone. Only a fault of the whole model (every request fails alone)
stops the engine, and then every waiter gets `EngineDeadError` with the cause. Plain Python and torch: no DSPy here.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import operator
import queue
import threading
from concurrent.futures import Future, InvalidStateError

import torch

from compound.lm.architecture import attention_layout
from compound.lm.config import EngineConfig, kv_shape
from compound.lm.errors import (
    ContextLengthError,
    EngineClosedError,
    EngineDeadError,
    InvalidRequestError,
    RequestAbortedError,
    RequestFailedError,
)
from compound.lm.faults import FaultInjector
from compound.lm.kv import PrefixCache, SlotKVCache
from compound.lm.lora import served_adapters
from compound.lm.runner import ModelRunner
from compound.lm.sampling import SamplingParams, choose_tokens, make_generator
from compound.lm.scheduler import Scheduler
from compound.lm.sequence import Result, Sequence, Status, TextTracker
from compound.lm.stats import EngineStats, StatsRecorder

log = logging.getLogger("compound.lm")

__all__ = ["Engine", "EngineClosedError", "EngineDeadError"]


def _eos_ids(model, tokenizer) -> frozenset[int]:
    ids = set()
    for source in (getattr(model, "generation_config", None), tokenizer):
        eos = getattr(source, "eos_token_id", None)
        ids.update([eos] if isinstance(eos, int) else eos or [])
    return frozenset(ids)


def settle(future: Future, result=None, error: BaseException | None = None) -> None:
    """Resolve a caller's future; a no-op when the caller cancelled it meanwhile (nobody is waiting)."""
    if future.done():
        return
    try:
        future.set_exception(error) if error is not None else future.set_result(result)
    except InvalidStateError:  # cancelled between the check and the set
        pass


class Engine:
    """Serves one loaded model to any number of threads and asyncio tasks through continuous batching.

    Example:
        >>> from compound.testing import tiny_llama
        >>> model, tok = tiny_llama(0)
        >>> engine = Engine(model, tok, EngineConfig(max_batch_size=4, max_seq_len=64))
        >>> engine.submit(tok("hello")["input_ids"], SamplingParams(max_tokens=3)).future.result().output_tokens
        3
        >>> engine.close()
    """

    def __init__(self, model, tokenizer, config: EngineConfig | None = None, name: str = "model", start: bool = True):
        """`start=False` runs no scheduler thread: the caller drives `step()` itself (tests that trace each step)."""
        config = config or EngineConfig()
        self.layout = attention_layout(model.config, config.trust_architecture)  # refuse what we cannot serve
        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name
        self.device = next(model.parameters()).device
        self.config = config.resolved(model, self.device)
        self.vocab_size = model.get_input_embeddings().num_embeddings
        layers, kv_heads, head_dim = kv_shape(model.config)
        c = self.config
        self.kv = SlotKVCache(layers, c.max_batch_size, kv_heads, c.max_seq_len, head_dim, model.dtype, self.device)
        self.prefix = PrefixCache(self.kv, c.prefix_block_size, c.prefix_cache_tokens // c.prefix_block_size)
        self.adapters = served_adapters(model, rows=c.max_batch_size)  # LoRA/prefix adapters mixed into batches
        self.scheduler = Scheduler(self.kv, self.prefix, c.max_prefill_tokens, c.prefix_block_size, self.adapters)
        self.runner = ModelRunner(model, self.kv, self.layout, cuda_graphs=c.cuda_graphs, adapters=self.adapters)
        self.faults = FaultInjector()  # test hook: see compound.lm.faults
        self.eos_ids = _eos_ids(model, tokenizer)
        self._stats = StatsRecorder()
        self._stats.set(kv_cache_bytes=self.kv.nbytes + self.prefix.nbytes)
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._aborts: set[int] = set()
        self._live: dict[int, Sequence] = {}  # scheduler thread only: every request it holds, by id
        # per stage, the requests that failed alone since that stage last ran: a model whose decode is broken must die
        # even when each request's prefill succeeds in between
        self._fault_streak: dict[str, set[int]] = {"prefill": set(), "decode": set()}
        self._oom = False  # this step hit an out-of-memory error
        self._wake = threading.Event()
        self._closed = False
        self._stopped = False  # set under _lock once the thread will take no more requests
        self._lock = threading.Lock()
        self._dead: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name=f"compound-engine-{name}", daemon=True)
        if start:
            self._thread.start()

    # ---- public API -------------------------------------------------------------------------------------------
    def submit(
        self, prompt_ids: list[int], params: SamplingParams, adapter: str | None = None, stream: bool = False
    ) -> Sequence:
        """Queue a request from any thread; `seq.future` resolves to a `Result` or the request's typed error.

        Cancelling `seq.future` (or `engine.abort(seq.id)`) frees the request's slot at the next step.
        """
        self._check_alive()
        seq = self.new_sequence(prompt_ids, params, adapter, stream)
        seq.future.add_done_callback(functools.partial(self._on_future_done, seq.id))
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
        if not isinstance(params, SamplingParams):
            raise InvalidRequestError(f"params must be a SamplingParams, got {type(params).__name__}")
        if len(prompt_ids) == 0:
            raise InvalidRequestError("empty prompt: give the model at least one token")
        try:
            prompt_ids = list(map(operator.index, prompt_ids))  # ints (numpy ones too), never floats
        except TypeError:
            raise InvalidRequestError(f"token ids must be integers, got {list(prompt_ids)[:5]}...") from None
        if min(prompt_ids) < 0 or max(prompt_ids) >= self.vocab_size:
            bad = [t for t in prompt_ids if not 0 <= t < self.vocab_size]
            raise InvalidRequestError(
                f"token ids outside the vocabulary [0, {self.vocab_size}): {bad[:5]}; tokenize with this model's tokenizer"
            )
        adapter = self.adapters.resolve(adapter)  # the served version (None: the base model)
        # prefix/prompt tuning: P virtual positions whose K/V are copied in at admission (placeholder ids)
        prompt_ids = [0] * self.adapters.virtual_tokens(adapter) + prompt_ids
        room = self.config.max_seq_len - len(prompt_ids)
        if room < 1:
            raise ContextLengthError(
                f"prompt of {len(prompt_ids)} tokens does not fit the context of {self.config.max_seq_len} tokens "
                f"of {self.name!r}; shorten the prompt (fewer demos) or raise EngineConfig(max_seq_len=...)",
                prompt_tokens=len(prompt_ids), max_seq_len=self.config.max_seq_len,
            )
        if params.max_tokens > room:
            params = dataclasses.replace(params, max_tokens=room)
        return Sequence(
            prompt_ids=prompt_ids,
            params=params,
            adapter=adapter,
            tracker=TextTracker(self.tokenizer, prompt_ids, params.stop, incremental=stream),
            generator=make_generator(params, self.device),
            eos_ids=self.eos_ids,
            stream=queue.SimpleQueue() if stream else None,
        )

    def abort(self, request_id: int) -> None:
        """Stop a request from any thread: it leaves the batch at the next step and its caller gets
        `RequestAbortedError` (nothing, if the caller cancelled its future). Unknown or finished ids are ignored."""
        with self._lock:
            self._aborts.add(request_id)
        self._wake.set()

    def generate(self, prompt: str, params: SamplingParams | None = None) -> Result:
        """Blocking convenience for one raw-text prompt (no chat template)."""
        ids = self.tokenizer(prompt, add_special_tokens=True)["input_ids"]
        seq = self.submit(ids, params or SamplingParams())
        try:
            return seq.future.result()
        except BaseException:
            self.abort(seq.id)  # KeyboardInterrupt while waiting: do not decode on for nobody
            raise

    def stats(self) -> EngineStats:
        s = self._stats.snapshot()
        s.prefix_cache_blocks = len(self.prefix)
        return s

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and self._dead is None and not self._closed

    def close(self, timeout: float = 10.0) -> None:
        """Stop the scheduler thread and free the K/V memory; pending requests fail with `EngineClosedError`."""
        self._closed = True
        self._wake.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _check_alive(self) -> None:
        if self._dead is not None:
            raise EngineDeadError(f"engine {self.name!r} stopped after an error; load the model again") from self._dead
        if self._closed:
            raise EngineClosedError(f"engine {self.name!r} is closed; create a new one with compound.LM(...)")

    def _on_future_done(self, request_id: int, future: Future) -> None:
        if future.cancelled():  # asyncio cancel (wrap_future cancels this future too) or an explicit cancel()
            self.abort(request_id)

    # ---- scheduler thread ---------------------------------------------------------------------------------------
    def _loop(self) -> None:
        if self.device.type == "cpu":
            torch.set_num_threads(self.config.cpu_threads)
        try:
            while not self._closed:
                self._take_inbox()
                if not self.scheduler.running and not self.scheduler.waiting:
                    self._wake.wait(0.5)
                    self._wake.clear()
                    continue
                self.step()
            err: BaseException = EngineClosedError(f"engine {self.name!r} was closed before this request finished")
        except BaseException as exc:  # a fault of the whole model must fail every caller, never leave them waiting
            log.error("engine %r stopped: %s: %s", self.name, type(exc).__name__, exc)
            self._dead = exc
            err = EngineDeadError(f"engine {self.name!r} stopped: {type(exc).__name__}: {exc}")
            err.__cause__ = exc
        with self._lock:
            self._stopped = True
        self._release_memory()  # before waking the callers: whoever restarts the model finds the memory free
        self._fail_all(err)

    def _take_inbox(self) -> None:
        """Queue new requests, then apply aborts (a request aborted right after submit is in `_live` by now)."""
        while True:
            try:
                seq = self._inbox.get_nowait()
            except queue.Empty:
                break
            self._live[seq.id] = seq
            self.scheduler.add(seq)
        with self._lock:
            aborts, self._aborts = self._aborts, set()
        for request_id in aborts:
            seq = self._live.get(request_id)
            if seq is not None:
                self.scheduler.remove(seq)
                self._stats.update(requests_aborted=1)
                self._settle(seq, error=RequestAbortedError(f"request {request_id} was aborted"))
        if aborts:
            self._publish_state()

    def step(self) -> None:
        """One iteration: admit newcomers, prefill one chunk budget, decode every running sequence once."""
        sched = self.scheduler
        self._oom = False
        for seq, exc in sched.admit(check=lambda s: self.faults.check("admission", [s])):
            self._settle(seq, error=self._request_error(seq, "admission", exc))
        seqs, chunks = sched.prefill_batch()
        if seqs:
            self._run(seqs, chunks, "prefill")
        decode = sched.decode_batch()
        if decode:
            self._run(decode, [1] * len(decode), "decode")
        for seq in [s for s in sched.running if s.finish_reason is not None]:
            sched.finish(seq)
            self._settle(seq)
        if not self._oom:
            sched.step_succeeded()
        self._publish_state()

    def _publish_state(self) -> None:
        sched = self.scheduler
        self._stats.set(requests_running=len(sched.running), queue_depth=len(sched.waiting),
                        slot_cap=sched.slot_cap, prefill_budget=sched.max_prefill_tokens)

    # ---- one forward pass, with fault isolation ---------------------------------------------------------------------
    def _run(self, seqs: list[Sequence], chunks: list[int], stage: str) -> None:
        try:
            passes = self._forward_isolating(seqs, chunks, stage)
        except torch.OutOfMemoryError as exc:
            self._on_oom(seqs, stage == "prefill", exc)
            return
        for group, group_chunks, logits, seconds in passes:
            self._after_forward(group, group_chunks, logits, seconds, stage)

    def _forward(self, seqs, chunks, stage):
        self.faults.check(stage, seqs)
        logits, seconds = self.runner.forward(seqs, chunks)
        return seqs, chunks, logits, seconds

    def _forward_isolating(self, seqs, chunks, stage) -> list[tuple]:
        """Run the batch; on an error retry it once (a transient fault costs nothing), then bisect it so only the
        requests that fail even alone fail. Raises when nothing could run twice in a row: the model itself is broken."""
        for _ in range(2):
            try:
                done = [self._forward(seqs, chunks, stage)]
                self._fault_streak[stage].clear()
                return done
            except torch.OutOfMemoryError:
                raise
            except Exception as exc:  # noqa: BLE001 - isolated below
                error = exc
                self._stats.update(forward_faults=1)
        done, failed = [], []
        if len(seqs) > 1:
            half = len(seqs) // 2
            self._bisect(seqs[:half], chunks[:half], stage, done, failed)
            self._bisect(seqs[half:], chunks[half:], stage, done, failed)
        else:
            failed.append((seqs[0], error))
        streak = self._fault_streak[stage]
        if done:
            streak.clear()
        else:
            streak.update(s.id for s, _ in failed)
            if len(streak) >= 2:  # distinct requests each fail alone at this stage: the model is broken
                raise failed[-1][1]
        for seq, exc in failed:
            seq.fail(self._request_error(seq, stage, exc))
        return done

    def _bisect(self, seqs, chunks, stage, done, failed) -> None:
        try:
            done.append(self._forward(seqs, chunks, stage))
        except torch.OutOfMemoryError:
            raise
        except Exception as exc:  # noqa: BLE001
            if len(seqs) == 1:
                failed.append((seqs[0], exc))
                return
            half = len(seqs) // 2
            self._bisect(seqs[:half], chunks[:half], stage, done, failed)
            self._bisect(seqs[half:], chunks[half:], stage, done, failed)

    def _after_forward(self, seqs, chunks, logits, seconds, stage) -> None:
        share = seconds / len(seqs)
        ready, ready_rows = [], []
        for i, (seq, n) in enumerate(zip(seqs, chunks)):
            seq.device_s += share
            first_pass = seq.num_computed < len(seq.prompt_ids)
            seq.num_computed += n
            if first_pass and seq.num_computed >= len(seq.prompt_ids):
                self.prefix.store_from(seq.block_hashes, seq.prompt_ids, seq.slot)
            if seq.num_uncomputed == 0:
                ready.append(seq)
                ready_rows.append(i)
        if ready:
            self._sample(ready, logits if len(ready_rows) == len(seqs) else logits[ready_rows])
        if stage == "prefill":
            self._stats.update(generated_tokens=len(ready), device_busy_s=seconds,
                               prefill_tokens_computed=sum(chunks))
        else:
            self._stats.decode_step(len(seqs), seconds)

    def _sample(self, seqs: list[Sequence], logits: torch.Tensor) -> None:
        """Choose each sequence's next token and record it; a failure here fails only its own request."""
        logits = self.faults.poison(logits, seqs)
        params, gens = [s.params for s in seqs], [s.generator for s in seqs]
        try:
            self.faults.check("sampling", seqs)
            choices: list = choose_tokens(logits, params, gens)
        except Exception:  # noqa: BLE001 - find the row(s) at fault, one at a time
            choices = []
            for i, seq in enumerate(seqs):
                try:
                    self.faults.check("sampling", [seq])
                    choices.append(choose_tokens(logits[i : i + 1], params[i : i + 1], gens[i : i + 1])[0])
                except Exception as exc:  # noqa: BLE001
                    choices.append(exc)
        for seq, choice in zip(seqs, choices):
            if isinstance(choice, BaseException):
                seq.fail(self._request_error(seq, "sampling", choice))
            elif choice is None:
                seq.fail(RequestFailedError(
                    f"request {seq.id}: the model produced NaN logits at output token {len(seq.output_ids)}; "
                    "this request failed alone (check the model's dtype: fp16 overflows are the usual cause)",
                    stage="sampling", request_id=seq.id))
            else:
                try:
                    self.faults.check("detokenize", [seq])
                    seq.append(choice)
                except Exception as exc:  # noqa: BLE001
                    seq.fail(self._request_error(seq, "detokenize", exc))

    # ---- out of memory ------------------------------------------------------------------------------------------------
    def _on_oom(self, seqs: list[Sequence], prefill: bool, exc: BaseException) -> None:
        """Shrink the work (prefill budget, then the slot cap by preempting the newest sequence) and retry next step;
        a sequence that does not fit even alone fails alone."""
        self._oom = True
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        self._stats.update(oom_retries=1)
        sched = self.scheduler
        if prefill and sched.shrink_prefill():
            log.warning("out of memory in prefill; prefill budget now %d tokens", sched.max_prefill_tokens)
        elif sched.preempt_newest() is not None:
            log.warning("out of memory; preempted one sequence, %d slots in use for now", sched.slot_cap)
        else:
            seq = seqs[0]
            seq.fail(RequestFailedError(
                f"out of memory even for this request alone ({seq.num_tokens} tokens); lower max_tokens, "
                "shorten the prompt or load the model in a smaller dtype", stage="oom", request_id=seq.id))
            seq.error.__cause__ = exc

    # ---- resolving callers --------------------------------------------------------------------------------------------
    def _request_error(self, seq: Sequence, stage: str, exc: BaseException) -> RequestFailedError:
        log.warning("request %d failed at %s: %s: %s (the engine carries on)", seq.id, stage, type(exc).__name__, exc)
        err = RequestFailedError(f"request {seq.id} failed at {stage}: {type(exc).__name__}: {exc}",
                                 stage=stage, request_id=seq.id)
        err.__cause__ = exc
        return err

    def _settle(self, seq: Sequence, error: BaseException | None = None) -> None:
        """Hand a finished, failed or aborted request to its caller and forget it."""
        self._live.pop(seq.id, None)
        seq.status = Status.FINISHED
        error = error or seq.error
        if error is None:
            self._stats.update(requests_finished=1, prefill_tokens_saved=seq.prefix_hit_tokens)
            result = seq.result()
        else:
            if not isinstance(error, RequestAbortedError):
                self._stats.update(errors=1)
            result = None
        if seq.stream is not None:
            seq.stream.put(None)
        settle(seq.future, result, error)

    def _fail_all(self, err: BaseException) -> None:
        self._take_inbox()
        for seq in [*self.scheduler.fail_all(), *self._live.values()]:
            if seq.id in self._live:
                self._settle(seq, error=err)

    def _release_memory(self) -> None:
        """A stopped engine gives its K/V memory back at once, even while objects still reference it."""
        self.runner.graphs = None
        self.prefix.release()
        self.kv.release()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
