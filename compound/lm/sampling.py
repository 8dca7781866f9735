"""Per-request sampling parameters and the batched next-token choice.

Greedy rows take one vectorised argmax. Sampled rows each draw from their own `torch.Generator`, so a seeded request
gives the same tokens whether it runs alone or inside any batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How one request chooses its tokens.

    Example:
        >>> SamplingParams(max_tokens=32, stop=("[[ ## completed ## ]]",))
        SamplingParams(max_tokens=32, temperature=0.0, top_p=1.0, top_k=0, seed=None, stop=('[[ ## completed ## ]]',))
    """

    max_tokens: int = 256
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 means no top-k cut
    seed: int | None = None
    stop: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"`max_tokens` must be at least 1, got {self.max_tokens=}.")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError(f"`temperature` must be in [0, 2], got {self.temperature=}.")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"`top_p` must be in (0, 1], got {self.top_p=}.")
        if self.top_k < 0:
            raise ValueError(f"`top_k` must be >= 0 (0 disables it), got {self.top_k=}.")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0 or self.top_k == 1


def make_generator(params: SamplingParams, device: torch.device) -> torch.Generator | None:
    """A generator for a sampled request: seeded when asked, otherwise from fresh OS entropy."""
    if params.greedy:
        return None
    gen = torch.Generator(device=device)
    if params.seed is not None:
        gen.manual_seed(params.seed)
    else:
        gen.seed()
    return gen


def _filter_logits(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Temperature, then top-k, then top-p (nucleus) on one row of logits (V,)."""
    logits = logits.float() / params.temperature
    if params.top_k and params.top_k < logits.shape[-1]:
        kth = torch.topk(logits, params.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        # drop a token when the tokens before it already cover top_p; the first token always stays
        drop_sorted = (cumulative - torch.softmax(sorted_logits, dim=-1)) >= params.top_p
        logits = logits.masked_fill(drop_sorted.scatter(0, order, drop_sorted), float("-inf"))
    return logits


def choose_tokens(
    logits: torch.Tensor, params: list[SamplingParams], generators: list[torch.Generator | None]
) -> list[int]:
    """Pick the next token of every row of `logits` (B, V) and return them as Python ints (one host sync)."""
    tokens = torch.argmax(logits, dim=-1)  # (B,)
    sampled = [i for i, p in enumerate(params) if not p.greedy]
    for i in sampled:
        probs = torch.softmax(_filter_logits(logits[i], params[i]), dim=-1)
        tokens[i] = torch.multinomial(probs, 1, generator=generators[i])[0]
    return tokens.tolist()
