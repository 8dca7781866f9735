"""`CurationWidget`: the live view of a `cp.curate` report: summary, issues by kind, a threshold per kind, keep/drop.

All logic stays in the plain `CurationReport`: a threshold typed here calls `report.rethreshold`, and keep/drop
clicks only update the `report.clean(...)` line shown under the table, ready to paste into the next cell.

Example:
    >>> import compound as cp
    >>> from compound.widgets.curation import CurationWidget
    >>> report = cp.curate(cp.zoo.tasks["triage"].train[:100])
    >>> widget = CurationWidget(report)
    >>> widget.keep = [3]; widget.code
    'report.clean(keep=[3])'
"""

from __future__ import annotations

from typing import Any

import traitlets

from compound.widgets._esm import css, esm
from compound.widgets._view import ModelView

MAX_ROWS = 500  # issues sent to the browser; the rest stay in report.issues() / report.to_pandas()


class CurationWidget(ModelView):
    """Kind filter, per-kind thresholds and keep/drop over a `CurationReport`; shows the equivalent clean() line."""

    _esm = esm("curation.js")
    _css = css()

    summary = traitlets.Dict().tag(sync=True)
    checks = traitlets.List().tag(sync=True)  # [{kind, threshold, default, rule, flagged, note, dropped}]
    issues = traitlets.List().tag(sync=True)  # [{index, kind, score, reason, example}]
    kind = traitlets.Unicode("").tag(sync=True)  # "" shows every kind
    thresholds = traitlets.Dict().tag(sync=True)  # {kind: number} typed in the browser
    keep = traitlets.List(traitlets.Int()).tag(sync=True)
    drop = traitlets.List(traitlets.Int()).tag(sync=True)
    code = traitlets.Unicode("").tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)

    def __init__(self, report: Any, **kwargs: Any):
        from compound.curate.report import CurationReport

        if not isinstance(report, CurationReport):
            raise TypeError(f"CurationWidget shows a cp.curate report, got {type(report).__name__}")
        super().__init__(report, **kwargs)
        self.observe(self._thresholds_typed, names=["thresholds"])
        self.observe(self._choice_changed, names=["keep", "drop"])

    def _state(self, report: Any) -> dict[str, Any]:
        from compound.curate.report import DEFAULT_CLEAN

        snap = report.snapshot()
        checks = [{**c, "threshold": None if c["threshold"] is None else float(c["threshold"]),
                   "default": None if c["default"] is None else float(c["default"]),
                   "dropped": c["kind"] in DEFAULT_CLEAN} for c in snap["checks"]]
        return {"summary": snap["summary"], "checks": checks, "issues": snap["issues"][:MAX_ROWS],
                "code": report.clean_code(keep=self.keep, drop=self.drop)}

    def _thresholds_typed(self, change: dict[str, Any]) -> None:
        current = self.source.thresholds
        moved = {k: float(v) for k, v in change["new"].items() if k in current and v is not None and v != current[k]}
        if not moved:
            return
        try:
            self.source.rethreshold(**moved)
            self.error = ""
        except ValueError as exc:  # e.g. below the floor this audit computed: say so, keep the old threshold
            self.error = str(exc)
        self.flush()

    def _choice_changed(self, change: dict[str, Any]) -> None:
        self.code = self.source.clean_code(keep=self.keep, drop=self.drop)

    def __repr__(self) -> str:
        return f"CurationWidget({len(self.source.examples)} examples)"
