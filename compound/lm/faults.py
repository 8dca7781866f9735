"""Fault injection: make the engine's real code paths fail at a chosen stage, for chosen requests (test hook).

The reliability suite proves that a fault costs only the requests it touches. It needs faults where real ones happen,
without a mocked model: the engine calls `faults.check(stage, seqs)` just before each stage's work and
`faults.poison(seqs)` on the logits it is about to sample from, so an injected fault travels the same handling as a
real one. With nothing injected each call is one attribute test.

    engine.faults.inject("decode", match=lambda seq: seq.id == victim.id)    # this request's forward raises
    engine.faults.inject("decode", error=lambda: torch.OutOfMemoryError("injected"), min_batch=2)   # memory fits one
    engine.faults.inject("nan_logits", times=1)                               # one NaN logit row
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch

STAGES = ("admission", "prefill", "decode", "sampling", "detokenize", "nan_logits")


class InjectedFault(RuntimeError):
    """The default error an injected fault raises."""


@dataclass
class Fault:
    stage: str
    match: Callable | None = None  # which requests trigger it (None: any)
    min_batch: int = 1  # only batches of at least this many requests
    times: int | None = None  # how often it fires (None: every time)
    error: Callable[[], BaseException] | None = None
    fired: int = 0

    def applies(self, seqs) -> list:
        if len(seqs) < self.min_batch or (self.times is not None and self.fired >= self.times):
            return []
        return [s for s in seqs if self.match is None or self.match(s)]


class FaultInjector:
    def __init__(self):
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def inject(self, stage: str, *, match=None, min_batch: int = 1, times: int | None = None, error=None) -> Fault:
        """Arm a fault; returns it (`fault.fired` counts how often it went off)."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; choose one of {STAGES}")
        fault = Fault(stage, match, min_batch, times, error)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def _hits(self, stage: str, seqs) -> tuple[Fault | None, list]:
        if not self._faults:
            return None, []
        with self._lock:
            for fault in self._faults:
                if fault.stage == stage and (hit := fault.applies(seqs)):
                    fault.fired += 1
                    return fault, hit
        return None, []

    def check(self, stage: str, seqs) -> None:
        """Raise the armed fault's error if one applies to this stage and these requests."""
        fault, hit = self._hits(stage, seqs)
        if fault is not None:
            ids = [s.id for s in hit]
            raise fault.error() if fault.error else InjectedFault(f"injected {stage} fault (requests {ids})")

    def poison(self, logits: torch.Tensor, seqs) -> torch.Tensor:
        """Logits with NaN rows for the requests an armed "nan_logits" fault picks."""
        fault, hit = self._hits("nan_logits", seqs)
        if fault is None:
            return logits
        rows = [i for i, s in enumerate(seqs) if s in hit]
        logits = logits.clone()
        logits[rows] = float("nan")
        return logits
