"""Per-request sampling parameters and the batched next-token choice.

Greedy rows take one vectorised argmax. Sampled rows each draw from their own `torch.Generator`, so a seeded request
gives the same tokens whether it runs alone or inside any batch.

Log-probabilities (`SamplingParams(logprobs=k)`) are those of the distribution the token was actually chosen from:
a greedy request reports the model's own distribution (log-softmax of its logits, in float32: exactly what HF
`generate` scores); a sampled request reports the distribution after temperature, top-k and top-p, so tokens cut away
have probability 0 and are never listed as alternatives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from compound.lm.errors import InvalidRequestError

MAX_TOP_LOGPROBS = 20
GREEDY_BELOW = 1e-5  # a temperature this close to 0 is greedy (as in vLLM): dividing by it would overflow


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How one request chooses its tokens. Bad values raise `InvalidRequestError` (a `ValueError`).

    `logprobs`: None (off), 0 (the chosen token's log-probability) or k ≤ 20 (also the k most likely alternatives).

    Example:
        >>> SamplingParams(max_tokens=32, stop=("[[ ## completed ## ]]",))
        SamplingParams(max_tokens=32, temperature=0.0, top_p=1.0, top_k=0, seed=None, stop=('[[ ## completed ## ]]',), logprobs=None)
    """

    max_tokens: int = 256
    temperature: float = 0.0  # 0 (or below 1e-5) means greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 means no top-k cut
    seed: int | None = None
    stop: tuple[str, ...] = field(default=())
    logprobs: int | None = None

    def __post_init__(self) -> None:
        def bad(msg: str):
            raise InvalidRequestError(msg)

        if not _is_int(self.max_tokens) or self.max_tokens < 1:
            bad(f"`max_tokens` must be an integer of at least 1, got {self.max_tokens!r}.")
        if not _is_real(self.temperature) or not 0.0 <= self.temperature <= 2.0:
            bad(f"`temperature` must be a number in [0, 2], got {self.temperature!r}.")
        if not _is_real(self.top_p) or not 0.0 < self.top_p <= 1.0:
            bad(f"`top_p` must be a number in (0, 1], got {self.top_p!r}.")
        if not _is_int(self.top_k) or self.top_k < 0:
            bad(f"`top_k` must be an integer >= 0 (0 disables it), got {self.top_k!r}.")
        if self.seed is not None and (not _is_int(self.seed) or not 0 <= self.seed < 2**63):
            bad(f"`seed` must be an integer in [0, 2**63), got {self.seed!r}.")
        if not isinstance(self.stop, tuple) or not all(isinstance(s, str) for s in self.stop):
            bad(f"`stop` must be a tuple of strings, got {self.stop!r}.")
        if self.logprobs is not None and (not _is_int(self.logprobs) or not 0 <= self.logprobs <= MAX_TOP_LOGPROBS):
            bad(f"`logprobs` must be None or an integer in [0, {MAX_TOP_LOGPROBS}], got {self.logprobs!r}.")

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_BELOW or self.top_k == 1


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_real(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True, slots=True)
class TokenChoice:
    """The token chosen for one row, with its log-probability and the top alternatives when the request asked."""

    token: int
    logprob: float | None = None
    top: tuple[tuple[int, float], ...] = ()


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
        probs = torch.softmax(sorted_logits, dim=-1)
        # drop a token when the tokens before it already cover top_p; the first token always stays
        drop_sorted = (probs.cumsum(dim=-1) - probs) >= params.top_p
        logits = logits.masked_fill(drop_sorted.scatter(0, order, drop_sorted), float("-inf"))
    return logits


def choose_tokens(
    logits: torch.Tensor, params: list[SamplingParams], generators: list[torch.Generator | None]
) -> list[TokenChoice | None]:
    """Pick the next token of every row of `logits` (B, V).

    A row with a NaN logit gets None: its request fails alone instead of emitting garbage. The host reads the results
    once (one sync), plus once more when some row asked for log-probabilities.
    """
    tokens = torch.argmax(logits, dim=-1)  # (B,)
    nan = torch.isnan(logits).any(dim=-1)
    chosen_lp, tops = {}, {}
    for i, p in enumerate(params):
        if p.greedy and p.logprobs is None:
            continue
        row = logits[i].float()
        if p.greedy:
            logp = torch.log_softmax(row, dim=-1)
        else:
            logp = torch.log_softmax(_filter_logits(row, p), dim=-1)
            probs = logp.exp()
            probs = torch.where(torch.isfinite(probs).all(), probs, torch.ones_like(probs))  # NaN row: failed below
            tokens[i] = torch.multinomial(probs, 1, generator=generators[i])[0]
        if p.logprobs is not None:
            chosen_lp[i] = logp[tokens[i]]
            if p.logprobs:
                tops[i] = torch.topk(logp, min(p.logprobs, logp.shape[-1]))
    host = torch.stack([tokens, nan.long()]).tolist()
    lp = dict(zip(chosen_lp, torch.stack(list(chosen_lp.values())).tolist())) if chosen_lp else {}
    top = {i: list(zip(t.indices.tolist(), t.values.tolist())) for i, t in tops.items()}
    out: list[TokenChoice | None] = []
    for i, (tok, is_nan) in enumerate(zip(*host)):
        if is_nan:
            out.append(None)
        elif i in lp:
            alternatives = tuple((j, v) for j, v in top.get(i, ()) if v != float("-inf"))
            out.append(TokenChoice(tok, lp[i], alternatives))
        else:
            out.append(TokenChoice(tok))
    return out
