"""Live engine statistics as a plain object: the sidebar and widgets display it, tests and benchmarks read it."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field


@dataclass
class EngineStats:
    """A snapshot of one engine's counters (copied under a lock, safe to keep).

    Example:
        >>> s = EngineStats(requests_total=3)
        >>> s.as_dict()["requests_total"]
        3
    """

    requests_total: int = 0
    requests_finished: int = 0
    requests_running: int = 0
    queue_depth: int = 0
    batch_size_hist: dict[str, int] = field(default_factory=dict)  # decode batch size -> steps
    steps: int = 0
    prompt_tokens: int = 0
    prefill_tokens_computed: int = 0
    prefill_tokens_saved: int = 0  # prompt tokens whose K/V came from the prefix cache
    generated_tokens: int = 0
    tokens_per_s: float = 0.0  # generated tokens per second over the last few seconds
    device_busy_s: float = 0.0
    errors: int = 0  # requests that failed (typed errors; aborts not counted)
    requests_aborted: int = 0
    forward_faults: int = 0  # batched forward passes that raised (each retried, then bisected)
    oom_retries: int = 0
    slot_cap: int = 0  # sequences admitted at most right now (shrinks after OOM, grows back)
    prefill_budget: int = 0  # prompt tokens per step right now (halves after OOM in prefill, grows back)
    kv_cache_bytes: int = 0
    prefix_cache_blocks: int = 0

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def mean_batch_size(self) -> float:
        steps = sum(self.batch_size_hist.values())
        return sum(int(k) * v for k, v in self.batch_size_hist.items()) / steps if steps else 0.0

    def __str__(self) -> str:
        return (
            f"{self.requests_finished}/{self.requests_total} requests, {self.requests_running} running, "
            f"{self.queue_depth} queued, mean decode batch {self.mean_batch_size:.1f}, "
            f"{self.generated_tokens} tokens generated ({self.tokens_per_s:.0f} tok/s), "
            f"prefill saved {self.prefill_tokens_saved}/{self.prompt_tokens} prompt tokens"
        )


class StatsRecorder:
    """Mutable counters the engine thread updates; `snapshot()` is what other threads read."""

    WINDOW_S = 5.0

    def __init__(self):
        self._lock = threading.Lock()
        self._s = EngineStats()
        self._hist: Counter[int] = Counter()
        self._recent: deque[tuple[float, int]] = deque()

    def update(self, **deltas: int | float) -> None:
        with self._lock:
            for k, v in deltas.items():
                setattr(self._s, k, getattr(self._s, k) + v)

    def set(self, **values) -> None:
        with self._lock:
            for k, v in values.items():
                setattr(self._s, k, v)

    def decode_step(self, batch_size: int, seconds: float) -> None:
        now = time.perf_counter()
        with self._lock:
            self._hist[batch_size] += 1
            self._s.steps += 1
            self._s.generated_tokens += batch_size
            self._s.device_busy_s += seconds
            self._recent.append((now, batch_size))
            while self._recent and now - self._recent[0][0] > self.WINDOW_S:
                self._recent.popleft()

    def snapshot(self) -> EngineStats:
        now = time.perf_counter()
        with self._lock:
            s = EngineStats(**{**asdict(self._s), "batch_size_hist": {str(k): v for k, v in sorted(self._hist.items())}})
            recent = [(t, n) for t, n in self._recent if now - t <= self.WINDOW_S]
        if len(recent) >= 2:
            span = max(recent[-1][0] - recent[0][0], 1e-6)
            s.tokens_per_s = sum(n for _, n in recent[1:]) / span
        return s
