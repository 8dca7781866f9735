"""`RoutingData`: what every candidate model did on every example, one row per (example, model), pandas underneath.

Columns of `data.frame`:

    example        0..n-1, the example's position        model          the candidate's name
    query          the text a router sees                score          the metric's score of this model's answer
    answer         the outputs as JSON ("" on error)     error          why the call failed ("" when it did not)
    truncated      the answer hit max_tokens
    input_tokens / output_tokens                         latency_s      wall-clock seconds of the call
    device_s       device-seconds the engine spent (compound engines report it; NaN for others)
    usd            DSPy's price estimate for hosted LMs (from LiteLLM's price table; NaN when unknown)
    params         the model's parameter count when known (compound engines)
    conf_logprob / conf_agreement / conf_verifier      confidences a cascade can defer on (NaN when not collected)
    conf_<kind>_calls / _device_s / _usd / _flops     what measuring the agreement or verifier confidence cost: the
                                                       extra samples, or the verifier's own LM calls ("logprob" is
                                                       read from the answer's own call and costs nothing more)

Costs: `cost="device"` (mean device-seconds per call of each model; per-call figures depend on batching),
`"compute"` (2 x parameters x tokens, FLOPs of a forward pass: deterministic, machine-independent), `"usd"` (DSPy's
estimate per call) or a `{model: cost per call}` dict; `"auto"` picks usd when every model has a price, else device.

Example:
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"example": [0, 0, 1, 1], "model": ["a", "b"] * 2, "query": ["q0", "q0", "q1", "q1"],
    ...                       "score": [1.0, 1.0, 0.0, 1.0]})
    >>> data = RoutingData(frame, ["a", "b"], cost={"a": 1.0, "b": 3.0})
    >>> data.scores.tolist(), data.costs.tolist()
    ([[1.0, 1.0], [0.0, 1.0]], [1.0, 3.0])
"""

from __future__ import annotations

import html
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FORMAT = "compound.route.RoutingData/1"
CONFIDENCES = ("logprob", "agreement", "verifier")
COST_UNITS = {"device": "device-seconds per call", "compute": "FLOPs per call (2 x params x tokens)",
              "usd": "USD per call", "user": "user cost per call"}
PAID_CONFIDENCES = ("agreement", "verifier")  # the ones that make LM calls of their own
_DEFAULTS = {"answer": "", "error": "", "truncated": False, "input_tokens": 0, "output_tokens": 0, "latency_s": np.nan,
             "device_s": np.nan, "usd": np.nan, "params": np.nan,
             **{f"conf_{kind}": np.nan for kind in CONFIDENCES},
             **{f"conf_{kind}_{unit}": 0.0 for kind in PAID_CONFIDENCES for unit in ("calls", "device_s", "usd", "flops")}}


class RoutingData:
    """Scores, costs and queries of `k` candidate models on `n` examples (build it with `cp.route.collect`).

    Args:
        frame: one row per (example, model), the columns listed in this module's docstring (missing optional
            columns are filled with their defaults).
        models: the candidates' names, in the order every (n, k) matrix uses.
        cost: "auto", "device", "compute", "usd" or `{model: cost per call}`.
        meta: free-form provenance (signature, model strings, cache key).

    Example:
        >>> import pandas as pd
        >>> frame = pd.DataFrame({"example": [0, 0], "model": ["a", "b"], "query": ["hi"] * 2, "score": [0.0, 1.0]})
        >>> RoutingData(frame, ["a", "b"], cost={"a": 1, "b": 2}).queries
        ['hi']
    """

    def __init__(self, frame: pd.DataFrame, models: list[str], *, cost: str | dict[str, float] = "auto",
                 meta: dict[str, Any] | None = None):
        missing = {"example", "model", "query", "score"} - set(frame.columns)
        if missing:
            raise ValueError(f"`frame` lacks the columns {sorted(missing)}; RoutingData needs example, model, query, score")
        self.models = list(models)
        unknown = set(frame["model"]) - set(self.models)
        if unknown:
            raise ValueError(f"`frame` has rows for models {sorted(unknown)} that are not in `models` {self.models}")
        frame = frame.copy()
        for column, default in _DEFAULTS.items():
            if column not in frame.columns:
                frame[column] = default
        self.frame = frame.sort_values(["example", "model"], key=self._model_order).reset_index(drop=True)
        counts = self.frame.groupby("example")["model"].nunique()
        if len(counts) and (counts != len(self.models)).any():
            bad = counts[counts != len(self.models)].index[:3].tolist()
            raise ValueError(f"every example needs one row per model; examples {bad} do not have {len(self.models)}")
        self.meta = dict(meta or {})
        self.cost = self._resolve_cost(cost)

    def _model_order(self, column: pd.Series) -> pd.Series:
        if column.name == "model":
            return column.map({m: i for i, m in enumerate(self.models)})
        return column

    # ---- shape -----------------------------------------------------------------------------------------------
    @property
    def n_examples(self) -> int:
        return int(self.frame["example"].nunique())

    def _matrix(self, column: str) -> np.ndarray:
        wide = self.frame.pivot(index="example", columns="model", values=column)
        return wide[self.models].to_numpy(dtype=float)

    @property
    def queries(self) -> list[str]:
        """The query text of each example (what text routers embed), in example order."""
        first = self.frame.drop_duplicates("example")
        return first.sort_values("example")["query"].tolist()

    @property
    def scores(self) -> np.ndarray:
        """(n, k) metric scores: `scores[i, j]` is model j's score on example i."""
        return self._matrix("score")

    def confidence(self, kind: str) -> np.ndarray:
        """(n, k) confidences of one kind ("logprob", "agreement" or "verifier") for cascades."""
        if kind not in CONFIDENCES:
            raise ValueError(f"`kind` must be one of {CONFIDENCES}, got {kind!r}")
        values = self._matrix(f"conf_{kind}")
        if np.isnan(values).all():
            how = {"logprob": "confidence='logprob' (and an LM that reports token log-probabilities)",
                   "agreement": "confidence='agreement', samples=5", "verifier": "confidence=<your verifier>"}[kind]
            raise ValueError(f"this data has no {kind!r} confidences; collect with {how}")
        return values

    # ---- costs -----------------------------------------------------------------------------------------------
    def _resolve_cost(self, cost: str | dict[str, float]) -> str | dict[str, float]:
        if isinstance(cost, dict):
            missing = set(self.models) - set(cost)
            if missing:
                raise ValueError(f"`cost` gives no number for {sorted(missing)}; pass one per model: {self.models}")
            return {m: float(cost[m]) for m in self.models}
        if cost not in ("auto", "device", "compute", "usd"):
            raise ValueError(f"`cost` must be 'auto', 'device', 'compute', 'usd' or a {{model: cost}} dict, got {cost!r}")
        if cost == "auto":
            if self.frame["usd"].notna().groupby(self.frame["model"]).any().all():
                return "usd"
            cost = "device"
        column = {"device": "device_s", "compute": "params", "usd": "usd"}[cost]
        known = self.frame[column].notna().groupby(self.frame["model"]).any()
        lacking = [m for m in self.models if not known.get(m, False)]
        if lacking and len(self.frame):
            hint = {"device": "only compound engines report device-seconds",
                    "compute": "the parameter count is known for compound engines only",
                    "usd": "DSPy prices hosted LMs only"}[cost]
            raise ValueError(f"no {cost!r} cost for {lacking} ({hint}); choose another `cost` or give numbers: "
                             f"cost={{{', '.join(repr(m) + ': ...' for m in self.models)}}}")
        return cost

    @property
    def cost_unit(self) -> str:
        return COST_UNITS["user" if isinstance(self.cost, dict) else self.cost]

    @property
    def cost_matrix(self) -> np.ndarray:
        """(n, k) cost of each model's call on each example, in `cost_unit`."""
        n, k = self.n_examples, len(self.models)
        if isinstance(self.cost, dict):
            return np.tile([self.cost[m] for m in self.models], (n, 1))
        if self.cost == "device":  # per-call device time depends on who shared the batch: use each model's mean
            return np.tile(np.nanmean(self._matrix("device_s"), axis=0), (n, 1))
        if self.cost == "compute":
            tokens = self._matrix("input_tokens") + self._matrix("output_tokens")
            return 2.0 * np.nanmax(self._matrix("params"), axis=0) * tokens
        usd = self._matrix("usd")  # a failed call has no price: charge the model's mean
        return np.where(np.isnan(usd), np.nanmean(usd, axis=0), usd)

    def confidence_cost(self, kind: str) -> np.ndarray:
        """(n, k) what measuring the `kind` confidence of each call cost on top of the call, in `cost_unit`.

        "logprob" costs nothing more (read from the answer's own call). "agreement" costs its samples and
        "verifier" the verifier's own LM calls, as measured: device-seconds, USD or FLOPs (2 x parameters x tokens
        of whichever model made them). With a `{model: cost}` dict each extra call costs one call of the model
        whose answer it checked.
        """
        if kind not in CONFIDENCES:
            raise ValueError(f"`kind` must be one of {CONFIDENCES}, got {kind!r}")
        n, k = self.n_examples, len(self.models)
        if kind not in PAID_CONFIDENCES:
            return np.zeros((n, k))
        if isinstance(self.cost, dict):
            return self._matrix(f"conf_{kind}_calls") * self.cost_matrix
        unit = {"device": "device_s", "compute": "flops", "usd": "usd"}[self.cost]
        extra = self._matrix(f"conf_{kind}_{unit}")
        if np.isnan(extra).any():
            raise ValueError(f"the {kind} confidence made LM calls with no {self.cost!r} cost (a verifier on a model "
                             f"{'compound does not serve' if self.cost != 'usd' else 'DSPy has no price for'}); "
                             f"choose another `cost` or give numbers: cost={{model: cost per call}}")
        return extra

    @property
    def costs(self) -> np.ndarray:
        """(k,) mean cost per call of each model, in `cost_unit` (what routers trade quality against)."""
        return self.cost_matrix.mean(axis=0) if self.n_examples else np.zeros(len(self.models))

    def with_cost(self, cost: str | dict[str, float]) -> RoutingData:
        """The same data costed another way ("device", "compute", "usd" or `{model: number}`); nothing re-runs."""
        return RoutingData(self.frame, self.models, cost=cost, meta=self.meta)

    # ---- subsets ---------------------------------------------------------------------------------------------
    def subset(self, examples) -> RoutingData:
        """The data of the given example positions, renumbered 0..m-1 in that order."""
        examples = [int(e) for e in examples]
        position = {e: i for i, e in enumerate(examples)}
        frame = self.frame[self.frame["example"].isin(position)].copy()
        frame["example"] = frame["example"].map(position)
        return RoutingData(frame, self.models, cost=self.cost, meta=self.meta)

    def split(self, test_size: float = 0.3, seed: int = 0) -> tuple[RoutingData, RoutingData]:
        """A random (train, test) split of the examples, `test_size` a share or a count.

        Example:
            >>> import pandas as pd
            >>> frame = pd.DataFrame({"example": range(10), "model": "a", "query": list("abcdefghij"), "score": 1.0})
            >>> train, test = RoutingData(frame, ["a"], cost={"a": 1}).split(test_size=0.3)
            >>> train.n_examples, test.n_examples
            (7, 3)
        """
        n = self.n_examples
        n_test = int(round(test_size * n)) if isinstance(test_size, float) and test_size < 1 else int(test_size)
        if not 0 < n_test < n:
            raise ValueError(f"`test_size`={test_size!r} leaves no train or no test examples out of {n}")
        order = np.random.default_rng(seed).permutation(n)
        return self.subset(sorted(order[n_test:])), self.subset(sorted(order[:n_test]))

    def __len__(self) -> int:
        return self.n_examples

    # ---- views -----------------------------------------------------------------------------------------------
    def summary(self) -> pd.DataFrame:
        """One row per model: mean score, mean cost, tokens, latency and errors."""
        grouped = self.frame.groupby("model", sort=False)
        table = pd.DataFrame({
            "score": grouped["score"].mean(),
            "cost": pd.Series(self.costs, index=self.models),
            "output_tokens": grouped["output_tokens"].mean(),
            "latency_ms": 1000 * grouped["latency_s"].mean(),
            "errors": grouped["error"].apply(lambda s: int((s != "").sum())),
        })
        return table.loc[self.models]

    def __repr__(self) -> str:
        head = (f"RoutingData({self.n_examples} examples x {len(self.models)} models; "
                f"cost: {self.cost_unit})")
        if not self.n_examples:
            return head
        oracle = self.scores.max(axis=1).mean()
        lines = [head, f"{'model':24}{'score':>8}{'cost':>12}{'errors':>8}"]
        for model, row in self.summary().iterrows():
            lines.append(f"{model:24}{row['score']:>8.3f}{row['cost']:>12.4g}{int(row['errors']):>8}")
        lines.append(f"{'oracle (best per example)':24}{oracle:>8.3f}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(repr(self))}</pre>"

    # ---- files: JSON only, written atomically ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return state_dict(self.frame, self.models, self.cost, self.meta)

    @classmethod
    def from_dict(cls, state: dict[str, Any], *, cost: str | dict[str, float] | None = None) -> RoutingData:
        if state.get("format") != FORMAT:
            raise ValueError(f"not a RoutingData file (format {state.get('format')!r}, expected {FORMAT!r})")
        frame = pd.DataFrame(state["rows"])
        for column in frame.columns:
            if column not in ("model", "query", "answer", "error"):
                frame[column] = pd.to_numeric(frame[column])
        return cls(frame, state["models"], cost=cost or state.get("cost", "auto"), meta=state.get("meta"))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the data as JSON (atomically: a temp file renamed into place)."""
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike, *, cost: str | dict[str, float] | None = None) -> RoutingData:
        """Read data written by `save` (plain JSON: nothing in it can run code)."""
        with open(path) as f:
            return cls.from_dict(json.load(f), cost=cost)


def state_dict(frame: pd.DataFrame, models: list[str], cost: str | dict[str, float], meta: dict) -> dict[str, Any]:
    """The JSON-able form of routing data (NaN becomes null)."""
    rows = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
    return {"format": FORMAT, "models": list(models), "cost": cost, "meta": meta, "rows": rows}


def write_json(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write `state` as JSON atomically (temp file in the same folder, then rename), creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as tmp:
        json.dump(state, tmp)
    os.replace(tmp.name, path)
    return path
