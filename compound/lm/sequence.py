"""One request's life inside the engine: its tokens, its text so far, how it ends, and its timings."""

from __future__ import annotations

import bisect
import enum
import itertools
import queue
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import torch

from compound.lm.sampling import SamplingParams, TokenChoice

_ids = itertools.count()


class Status(enum.Enum):
    WAITING = "waiting"  # queued, holds no KV slot
    RUNNING = "running"  # holds a slot; prefilling or decoding
    FINISHED = "finished"  # done, failed or aborted: holds nothing


@dataclass(slots=True)
class Result:
    """What a finished sequence hands back to its caller."""

    text: str
    finish_reason: str  # "stop" (EOS or a stop string) or "length"
    prompt_tokens: int
    output_tokens: int
    queue_s: float
    latency_s: float
    ttft_s: float
    device_s: float
    prefix_hit_tokens: int
    request_id: int = -1
    output_ids: list[int] = field(default_factory=list)  # the generated token ids (EOS not included)
    logprobs: list[TokenChoice] | None = None  # one per output token whose text is in `text`, when asked


class TextTracker:
    """Incremental detokenization plus stop-string search across token boundaries.

    Decoding only a short window of recent tokens keeps each step O(1) in the output length; a stop string that spans
    several tokens is still found because the search looks back over the last `max_stop_len` characters.
    """

    def __init__(self, tokenizer, prompt_ids: list[int], stop: tuple[str, ...], incremental: bool = True):
        self.tokenizer = tokenizer
        self.stop = tuple(s for s in stop if s)
        # without stop strings or a stream nobody looks at the text before the end: decode once, in flush()
        self.incremental = incremental or bool(self.stop)
        self.max_stop = max((len(s) for s in self.stop), default=0)
        self.text = ""
        self.stopped_at_token: int | None = None  # after a stop string: how many tokens' text is kept
        self._starts: list[int] = []  # where each token's text starts in `text` (incremental mode)
        self._ids: list[int] = []
        self._prefix_offset = 0  # window start: tokens before it are already final text
        self._read_offset = 0

    def add(self, token_id: int) -> str | None:
        """Append one token; returns the matched stop string if the text now contains one."""
        self._ids.append(token_id)
        if not self.incremental:
            return None
        self._starts.append(len(self.text))
        prefix = self.tokenizer.decode(self._ids[self._prefix_offset : self._read_offset], skip_special_tokens=True)
        full = self.tokenizer.decode(self._ids[self._prefix_offset :], skip_special_tokens=True)
        if full.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for the next token
            return None
        new = full[len(prefix) :]
        search_from = max(0, len(self.text) - self.max_stop + 1)
        self.text += new
        self._prefix_offset, self._read_offset = self._read_offset, len(self._ids)
        return self._cut_at_stop(search_from)

    def flush(self) -> str | None:
        """At the end, keep what was held back (an incomplete UTF-8 sequence decodes to U+FFFD, as in HF); returns
        the stop string if the held-back text completes one."""
        full = self.tokenizer.decode(self._ids[self._prefix_offset :], skip_special_tokens=True)
        prefix = self.tokenizer.decode(self._ids[self._prefix_offset : self._read_offset], skip_special_tokens=True)
        search_from = max(0, len(self.text) - self.max_stop + 1)
        self.text += full[len(prefix) :]
        self._prefix_offset = self._read_offset = len(self._ids)
        return self._cut_at_stop(search_from) if self.stop else None

    def _cut_at_stop(self, search_from: int) -> str | None:
        """Cut the text at the earliest stop string that starts at or after `search_from`."""
        hits = [(at, s) for s in self.stop if (at := self.text.find(s, search_from)) != -1]
        if not hits:
            return None
        at, stop = min(hits)
        self.text = self.text[:at]
        self.stopped_at_token = bisect.bisect_left(self._starts, at)
        return stop

    def safe_text_len(self) -> int:
        """How much of the text can be streamed now without showing the start of a stop string."""
        return max(0, len(self.text) - self.max_stop + 1) if self.max_stop else len(self.text)


@dataclass(eq=False)
class Sequence:
    """A request: prompt and output tokens, sampling state, KV slot, caller's future and timings."""

    prompt_ids: list[int]
    params: SamplingParams
    adapter: object | None  # compound.lm.lora.ServedAdapter (None: the base model)
    tracker: TextTracker
    generator: torch.Generator | None
    eos_ids: frozenset[int]
    future: Future = field(default_factory=Future)
    stream: queue.SimpleQueue | None = None  # text deltas for streaming callers; None marks the end
    id: int = field(default_factory=lambda: next(_ids))  # the request id `Engine.abort` takes
    status: Status = Status.WAITING
    output_ids: list[int] = field(default_factory=list)
    num_computed: int = 0  # tokens whose K/V sit in the slot
    slot: int = -1
    prefix_hit_tokens: int = 0
    block_hashes: list[int] | None = None  # prompt blocks, for prefix reuse
    finish_reason: str | None = None  # set when done; "error" with `error` set when the request failed
    error: BaseException | None = None
    choices: list[TokenChoice] | None = None  # per output token, when the request asked for logprobs
    arrived: float = field(default_factory=time.perf_counter)
    admitted: float | None = None
    first_token: float | None = None
    device_s: float = 0.0
    _streamed: int = 0

    @property
    def tokens(self) -> list[int]:
        return self.prompt_ids + self.output_ids

    def token_at(self, i: int) -> int:
        n = len(self.prompt_ids)
        return self.prompt_ids[i] if i < n else self.output_ids[i - n]

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_ids) + len(self.output_ids)

    @property
    def num_uncomputed(self) -> int:
        """Tokens whose K/V are not in the slot yet: the whole prompt at first, exactly 1 while decoding
        (the last sampled token), and prompt plus earlier output after a preemption."""
        return self.num_tokens - self.num_computed

    def fail(self, error: BaseException) -> None:
        """Mark the request failed; the engine frees its slot and hands `error` to the caller at the end of the step."""
        self.finish_reason, self.error = "error", error

    def append(self, choice: TokenChoice) -> None:
        """Record a sampled token and decide whether the sequence is done."""
        now = time.perf_counter()
        if self.first_token is None:
            self.first_token = now
        token_id = choice.token
        if token_id in self.eos_ids:
            self.finish_reason = "stop"
            self.tracker.flush()
        else:
            self.output_ids.append(token_id)
            if self.params.logprobs is not None:
                self.choices = self.choices or []
                self.choices.append(choice)
            if self.tracker.add(token_id) is not None:
                self.finish_reason = "stop"
            elif len(self.output_ids) >= self.params.max_tokens:
                self.finish_reason = "stop" if self.tracker.flush() is not None else "length"
        if self.stream is not None:
            upto = len(self.tracker.text) if self.finish_reason else self.tracker.safe_text_len()
            if upto > self._streamed:
                self.stream.put(self.tracker.text[self._streamed : upto])
                self._streamed = upto

    def result(self) -> Result:
        end = time.perf_counter()
        admitted = self.admitted if self.admitted is not None else end
        logprobs = None
        if self.params.logprobs is not None:
            kept = self.tracker.stopped_at_token
            logprobs = (self.choices or [])[:kept]
        return Result(
            text=self.tracker.text,
            finish_reason=self.finish_reason or "stop",
            prompt_tokens=len(self.prompt_ids),
            output_tokens=len(self.output_ids),
            queue_s=admitted - self.arrived,
            latency_s=end - self.arrived,
            ttft_s=(self.first_token or end) - self.arrived,
            device_s=self.device_s,
            prefix_hit_tokens=self.prefix_hit_tokens,
            request_id=self.id,
            output_ids=list(self.output_ids),
            logprobs=logprobs,
        )
