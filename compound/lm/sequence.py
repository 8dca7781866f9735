"""One request's life inside the engine: its tokens, its text so far, how it ends, and its timings."""

from __future__ import annotations

import enum
import itertools
import queue
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import torch

from compound.lm.sampling import SamplingParams

_ids = itertools.count()


class Status(enum.Enum):
    WAITING = "waiting"  # queued, holds no KV slot
    RUNNING = "running"  # holds a slot; prefilling or decoding
    FINISHED = "finished"


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
        self._ids: list[int] = []
        self._prefix_offset = 0  # window start: tokens before it are already final text
        self._read_offset = 0

    def add(self, token_id: int) -> str | None:
        """Append one token; returns the matched stop string if the text now contains one."""
        self._ids.append(token_id)
        if not self.incremental:
            return None
        prefix = self.tokenizer.decode(self._ids[self._prefix_offset : self._read_offset], skip_special_tokens=True)
        full = self.tokenizer.decode(self._ids[self._prefix_offset :], skip_special_tokens=True)
        if full.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for the next token
            return None
        new = full[len(prefix) :]
        search_from = max(0, len(self.text) - self.max_stop + 1)
        self.text += new
        self._prefix_offset, self._read_offset = self._read_offset, len(self._ids)
        for s in self.stop:
            at = self.text.find(s, search_from)
            if at != -1:
                self.text = self.text[:at]
                return s
        return None

    def flush(self) -> None:
        """At the end, keep what was held back (an incomplete UTF-8 sequence decodes to U+FFFD, as in HF)."""
        full = self.tokenizer.decode(self._ids[self._prefix_offset :], skip_special_tokens=True)
        prefix = self.tokenizer.decode(self._ids[self._prefix_offset : self._read_offset], skip_special_tokens=True)
        self.text += full[len(prefix) :]
        self._prefix_offset = self._read_offset = len(self._ids)

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
    id: int = field(default_factory=lambda: next(_ids))
    status: Status = Status.WAITING
    output_ids: list[int] = field(default_factory=list)
    num_computed: int = 0  # tokens whose K/V sit in the slot
    slot: int = -1
    prefix_hit_tokens: int = 0
    block_hashes: list[int] | None = None  # prompt blocks, for prefix reuse
    finish_reason: str | None = None
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

    def append(self, token_id: int) -> None:
        """Record a sampled token and decide whether the sequence is done."""
        now = time.perf_counter()
        if self.first_token is None:
            self.first_token = now
        if token_id in self.eos_ids:
            self.finish_reason = "stop"
            self.tracker.flush()
        else:
            self.output_ids.append(token_id)
            if self.tracker.add(token_id) is not None:
                self.finish_reason = "stop"
            elif len(self.output_ids) >= self.params.max_tokens:
                self.finish_reason = "length"
                self.tracker.flush()
        if self.stream is not None:
            upto = len(self.tracker.text) if self.finish_reason else self.tracker.safe_text_len()
            if upto > self._streamed:
                self.stream.put(self.tracker.text[self._streamed : upto])
                self._streamed = upto

    def result(self) -> Result:
        end = time.perf_counter()
        admitted = self.admitted if self.admitted is not None else end
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
        )
