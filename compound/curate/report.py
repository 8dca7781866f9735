"""`CurationReport`: what `cp.curate` found, per example and per kind, with thresholds you can move.

A plain observable model (`compound.observe.Observable`): it prints as text, renders as a static HTML record
(summary, thresholds, issues by kind with the example and the reason), and in a live notebook the curation widget
follows it. Every check keeps its scores, so `rethreshold` only re-reads them. The audited examples are never
changed: `clean()` returns new ones.

Example:
    >>> import dspy, compound as cp
    >>> rows = [dspy.Example(ticket=t, category=c).with_inputs("ticket") for t, c in [
    ...     ("I want a refund for my order", "billing"), ("i want a refund for my order", "billing"),
    ...     ("The app crashes on start", "technical"), ("My parcel is late", "shipping")] * 3]
    >>> report = cp.curate(rows, fields=["ticket"])
    >>> len(report.clean()), len(rows)     # exact and near copies dropped; the input list is untouched
    (3, 12)
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from compound.observe import Observable

# Kinds in the order they are reported; `clean()` drops DEFAULT_CLEAN unless told otherwise.
KINDS = ("duplicate", "leak", "label", "outlier", "low_value", "imbalance")
DEFAULT_CLEAN = ("duplicate", "leak", "label")
TEXT_ROWS_PER_KIND = 3  # issues of each kind shown in the text repr
HTML_ROWS_PER_KIND = 25  # ... and in the HTML record


@dataclass
class Check:
    """One kind of finding: a score per example, a threshold, and `flag_at(threshold) -> {position: reason}`."""

    kind: str
    score: np.ndarray  # per example; NaN where the check does not apply
    threshold: float | None
    rule: str  # how to read the threshold, a format string: "similarity >= {t}"
    flag_at: Callable[[float | None], dict[int, str]] = field(repr=False)
    when_none: str = ""  # what flags when the threshold is None, e.g. "cleanlab's confident learning"
    note: str = ""
    default: float | None = field(init=False)

    def __post_init__(self) -> None:
        self.default = self.threshold

    def describe(self) -> str:
        return self.when_none if self.threshold is None else self.rule.format(t=format(self.threshold, "g"))


def _short(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


class CurationReport(Observable):
    """Findings of `cp.curate` over `examples` (kept by reference, never modified).

    `issues(kind)` lists flagged examples with reasons, `rethreshold(duplicate=0.9, ...)` moves thresholds without
    recomputing, `clean(...)` returns the kept examples, `to_pandas()` gives one row per example.
    """

    def __init__(self, examples: Sequence[Any], texts: Sequence[str], labels: dict[str, list[str]],
                 checks: Iterable[Check], *, info: dict[str, Any]):
        super().__init__()
        self.examples = list(examples)
        self.texts = list(texts)
        self.labels = labels
        self.checks = {check.kind: check for check in checks}
        self.info = info
        self._flags = {kind: check.flag_at(check.threshold) for kind, check in self.checks.items()}

    # ---- reading ------------------------------------------------------------------------------------------
    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(kind for kind in KINDS if kind in self.checks)

    @property
    def thresholds(self) -> dict[str, float | None]:
        return {kind: self.checks[kind].threshold for kind in self.kinds}

    def flagged(self, kind: str) -> dict[int, str]:
        """{position: reason} for the examples flagged with `kind` at its current threshold."""
        self._check_kind(kind)
        return dict(self._flags[kind])

    def issues(self, kinds: str | Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Flagged examples as rows {index, kind, score, reason, example}, grouped by kind, worst first."""
        kinds = self._kinds(kinds)
        rows = []
        for kind in kinds:
            check = self.checks[kind]
            worst_first = -1 if kind in ("duplicate", "leak") else 1
            for i, reason in sorted(self._flags[kind].items(),
                                    key=lambda item: (worst_first * np.nan_to_num(check.score[item[0]]), item[0])):
                score = check.score[i]
                rows.append({"index": i, "kind": kind, "score": None if np.isnan(score) else round(float(score), 4),
                             "reason": reason, "example": self.describe(i)})
        return rows

    def describe(self, i: int) -> str:
        """Example i in one line: its inputs, then its labels after an arrow."""
        labels = ", ".join(f"{values[i]}" for values in self.labels.values())
        return _short(self.texts[i]) + (f" → {_short(labels, 30)}" if labels else "")

    def summary(self) -> dict[str, Any]:
        return {
            "examples": len(self.examples),
            "flagged": {kind: len(self._flags[kind]) for kind in self.kinds},
            "dropped_by_clean": len(self.examples) - len(self._kept(DEFAULT_CLEAN, (), ())),
            **self.info,
        }

    # ---- acting -------------------------------------------------------------------------------------------
    def rethreshold(self, **thresholds: float | None) -> CurationReport:
        """Move thresholds (e.g. `duplicate=0.9, label=0.3`); scores are re-read, nothing is recomputed.

        Example:
            >>> import dspy, compound as cp
            >>> rows = [dspy.Example(ticket=t, category=c).with_inputs("ticket") for t, c in [
            ...     ("I want a refund for my order", "billing"), ("i want a refund for my order", "billing"),
            ...     ("The app crashes on start", "technical"), ("My parcel is late", "shipping")] * 3]
            >>> report = cp.curate(rows, fields=["ticket"])
            >>> report.rethreshold(duplicate=0.95).thresholds["duplicate"]
            0.95
        """
        flags = {}
        for kind, value in thresholds.items():
            self._check_kind(kind)
            flags[kind] = self.checks[kind].flag_at(value)  # raises before anything changes
        with self._lock:
            for kind, value in thresholds.items():
                self.checks[kind].threshold = value
                self._flags[kind] = flags[kind]
            self._changed()
        return self

    def clean(self, issues: str | Iterable[str] | None = None, *, thresholds: dict[str, float | None] | None = None,
              keep: Iterable[int] = (), drop: Iterable[int] = ()) -> list[Any]:
        """New examples without the flagged ones (copies: the audited list and its examples stay as they were).

        `issues`: kinds to drop (default: duplicates, leaks and label issues; "all" for every kind);
        `thresholds`: {kind: threshold} for this call only; `keep`/`drop`: positions to keep or drop regardless.

        Example:
            >>> import compound as cp
            >>> triage = cp.zoo.tasks["triage"]
            >>> train = triage.train[:40] + triage.dev[:2]      # two dev tickets leaked into the training data
            >>> report = cp.curate(train, against={"dev": triage.dev})
            >>> len(report.clean(["leak", "duplicate"], thresholds={"duplicate": 0.9}))
            40
            >>> len(report.clean(["leak", "duplicate"], keep=[40])), len(train)   # keep #40 anyway; train untouched
            (41, 42)
        """
        kinds = self._kinds(DEFAULT_CLEAN if issues is None else issues)
        flags = dict(self._flags)
        for kind, value in (thresholds or {}).items():
            self._check_kind(kind)
            flags[kind] = self.checks[kind].flag_at(value)
        kept = self._kept(kinds, keep, drop, flags)
        return [self._copy(self.examples[i]) for i in kept]

    def clean_code(self, issues: Iterable[str] | None = None, *, keep: Iterable[int] = (),
                   drop: Iterable[int] = (), name: str = "report") -> str:
        """The `report.clean(...)` line that reproduces a choice, with thresholds that differ from the defaults."""
        args = []
        kinds = list(DEFAULT_CLEAN if issues is None else self._kinds(issues))
        if tuple(kinds) != DEFAULT_CLEAN:
            args.append(repr(kinds))
        moved = {k: c.threshold for k, c in self.checks.items() if c.threshold != c.default and k in kinds}
        if moved:
            args.append(f"thresholds={moved!r}")
        if keep := sorted(set(keep)):
            args.append(f"keep={keep}")
        if drop := sorted(set(drop)):
            args.append(f"drop={drop}")
        return f"{name}.clean({', '.join(args)})"

    def to_pandas(self):
        """One row per example: its text and labels, then `is_<kind>` and `<kind>_score` per check and the reasons."""
        import pandas as pd

        frame = pd.DataFrame({"text": self.texts, **{f: list(v) for f, v in self.labels.items()}})
        reasons = [[] for _ in self.examples]
        for kind in self.kinds:
            flags = self._flags[kind]
            frame[f"is_{kind}"] = [i in flags for i in range(len(self.examples))]
            frame[f"{kind}_score"] = self.checks[kind].score
            for i, reason in flags.items():
                reasons[i].append(f"{kind}: {reason}")
        frame["reasons"] = ["; ".join(r) for r in reasons]
        return frame

    # ---- helpers ------------------------------------------------------------------------------------------
    def _check_kind(self, kind: str) -> None:
        if kind not in self.checks:
            hint = "" if kind in KINDS else f" (kinds are {list(KINDS)})"
            raise ValueError(f"this report has no {kind!r} check{hint}; it has {list(self.kinds)}")

    def _kinds(self, kinds: str | Iterable[str] | None) -> list[str]:
        if kinds is None or kinds == "all":
            return list(self.kinds)
        kinds = [kinds] if isinstance(kinds, str) else list(kinds)
        for kind in kinds:
            if kind not in KINDS:
                raise ValueError(f"unknown issue kind {kind!r}; kinds are {list(KINDS)}")
        return [kind for kind in kinds if kind in self.checks]

    def _kept(self, kinds, keep, drop, flags=None) -> list[int]:
        flags = self._flags if flags is None else flags
        n = len(self.examples)
        keep, drop = set(keep), set(drop)
        for i in keep | drop:
            if not (isinstance(i, (int, np.integer)) and 0 <= i < n):
                raise ValueError(f"keep/drop take example positions 0..{n - 1}, got {i!r}")
        out = set().union(*(flags[k].keys() for k in kinds if k in flags)) if kinds else set()
        out = (out - keep) | drop
        return [i for i in range(n) if i not in out]

    @staticmethod
    def _copy(example: Any) -> Any:
        return example.copy() if hasattr(example, "copy") else dict(example)

    # ---- views --------------------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "summary": self.summary(),
                "checks": [{"kind": k, "threshold": c.threshold, "default": c.default, "rule": c.describe(),
                            "flagged": len(self._flags[k]), "note": c.note} for k, c in self.checks.items()],
                "issues": self.issues(),
            }

    def _summary_lines(self) -> list[str]:
        summary = self.summary()
        head = f"CurationReport: {summary['examples']} examples"
        if self.info.get("against"):
            head += " vs " + ", ".join(f"{k} ({v})" for k, v in self.info["against"].items())
        lines = [head]
        for kind in self.kinds:
            check = self.checks[kind]
            note = f"  ({check.note})" if check.note else ""
            lines.append(f"  {kind:<10} {len(self._flags[kind]):>5} flagged  {check.describe()}{note}")
        lines.append(f"  clean() keeps {len(self.examples) - summary['dropped_by_clean']} "
                     f"(drops {', '.join(DEFAULT_CLEAN)})")
        return lines

    def _shown_issues(self, per_kind: int) -> tuple[list[dict[str, Any]], int]:
        """The worst `per_kind` issues of each kind, and how many are left out."""
        rows = self.issues()
        shown = [r for kind in self.kinds for r in [r for r in rows if r["kind"] == kind][:per_kind]]
        return shown, len(rows) - len(shown)

    def __repr__(self) -> str:
        lines = self._summary_lines()
        rows, more = self._shown_issues(TEXT_ROWS_PER_KIND)
        if rows:
            lines.append("")
            width = max(len(r["kind"]) for r in rows)
            for row in rows:
                lines.append(f"  #{row['index']:<5} {row['kind']:<{width}}  {_short(row['example'], 50):<50}  {row['reason']}")
            if more:
                lines.append(f"  ... {more} more: report.issues() or report.to_pandas()")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        esc = html.escape
        summary = "".join(f"<div>{esc(line.strip())}</div>" for line in self._summary_lines())
        thresholds = "".join(
            f"<tr><td>{esc(k)}</td><td>{len(self._flags[k])}</td><td>{esc(c.describe())}</td><td>{esc(c.note)}</td></tr>"
            for k, c in self.checks.items()
        )
        rows, left_out = self._shown_issues(HTML_ROWS_PER_KIND)
        issues = "".join(
            f"<tr><td>{esc(r['kind'])}</td><td>{r['index']}</td><td>{esc(r['example'])}</td><td>{esc(r['reason'])}</td></tr>"
            for r in rows
        )
        more = f"<div>… {left_out} more issues: report.issues() or report.to_pandas()</div>" if left_out else ""
        return (
            f'<div class="compound-curation">{summary}'
            f'<table class="compound-table"><thead><tr><th>kind</th><th>flagged</th><th>rule</th>'
            f"<th>note</th></tr></thead><tbody>{thresholds}</tbody></table>"
            f'<table class="compound-table"><thead><tr><th>kind</th><th>#</th><th>example</th><th>reason</th></tr>'
            f"</thead><tbody>{issues}</tbody></table>{more}</div>"
        )
