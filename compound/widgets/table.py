"""`TableWidget`: a sortable table over a `compound.widgets.Table`; click a header to sort, again to reverse.

Example:
    >>> from compound.widgets import Column, Table, TableWidget
    >>> table = Table([Column("trial"), Column("score", format=".2f")])
    >>> table.add_row({"trial": 1, "score": 0.5})
    >>> TableWidget(table).rows
    [{'trial': 1, 'score': 0.5}]
"""

from __future__ import annotations

from typing import Any

import traitlets

from compound.widgets._esm import css, esm
from compound.widgets._view import ModelView
from compound.observe import Table


class TableWidget(ModelView):
    """Rows under fixed columns; the sort order is a synced trait, so it is kept in the model and the text repr too."""

    _esm = esm("table.js")
    _css = css()

    columns = traitlets.List().tag(sync=True)  # [{"key", "label", "format"}]
    rows = traitlets.List().tag(sync=True)
    sort_by = traitlets.Unicode(None, allow_none=True).tag(sync=True)
    descending = traitlets.Bool(False).tag(sync=True)
    max_height = traitlets.Int(320).tag(sync=True)  # pixels; the body scrolls beyond it
    # Clicking a body row sets `selected` to that row's `row_key` value (None: rows are not selectable).
    row_key = traitlets.Unicode(None, allow_none=True).tag(sync=True)
    selected = traitlets.Any(None, allow_none=True).tag(sync=True)

    def __init__(self, table: Table, **kwargs: Any):
        if not isinstance(table, Table):
            raise TypeError(f"TableWidget shows a compound.widgets.Table, got {type(table).__name__}")
        super().__init__(table, **kwargs)
        self.observe(self._sort_changed, names=["sort_by", "descending"])

    def _state(self, table: Table) -> dict[str, Any]:
        return table.snapshot()

    def _sort_changed(self, change: dict[str, Any]) -> None:
        # A header click in the browser sorts the model too, so the text repr and other views agree.
        keys = [c.key for c in self.source.columns]
        if self.sort_by is not None and self.sort_by not in keys:
            return
        with self.source._lock:
            self.source.sort_by = self.sort_by
            self.source.descending = self.descending
