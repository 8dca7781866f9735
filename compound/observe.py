"""Plain observable models that capabilities report through: `Progress`, `LineChart` and `Table`.

This is the layer under every view: `optimize`, `tune`, `route`, `curate` and `jobs` fill these models, and
`compound.widgets` (above them all) shows them.

They hold the data, are safe to update from any thread, print as text and render as static HTML (a chart as inline
SVG), so they work the same in a script, in a test, in nbval, on GitHub and in a notebook. In a live notebook
`compound.widgets` registers a widget for each model type (`compound.widgets.VIEWS`), which follows the model as it
changes. This module imports nothing from Jupyter and nothing from `compound.widgets`.

Example:
    >>> bar = Progress(total=4, description="bootstrap")
    >>> bar.advance(); bar.advance()
    >>> bar.fraction
    0.5
"""

from __future__ import annotations

import html
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Column", "LineChart", "Progress", "Table", "chart_svg"]


class Watchable:
    """`watch(fn)` registers a callback for changes; the class holds `_lock` and a `_watchers` tuple and calls them."""

    _lock: Any
    _watchers: tuple[Callable[[Any], None], ...]

    def watch(self, fn: Callable[[Any], None]) -> Callable[[], None]:
        """Call `fn(self)` after each change (on the changing thread, so keep it cheap); returns an unwatch function."""
        with self._lock:
            self._watchers = (*self._watchers, fn)

        def unwatch() -> None:
            with self._lock:
                self._watchers = tuple(w for w in self._watchers if w is not fn)

        return unwatch


class Observable(Watchable):
    """Thread-safe change notification: `watch(fn)` calls `fn(model)` after every change."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._watchers: tuple[Callable[[Any], None], ...] = ()
        self.version = 0

    def _changed(self) -> None:
        self.version += 1
        for fn in self._watchers:
            fn(self)

    def snapshot(self) -> dict[str, Any]:
        raise NotImplementedError

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(repr(self))}</pre>"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class Progress(Observable):
    """A progress bar's state: `value` out of `total` (None: unknown total), a description and a status.

    Example:
        >>> bar = Progress(total=10, description="examples")
        >>> bar.update(value=3)
        >>> bar.fraction
        0.3
    """

    def __init__(self, total: float | None = None, description: str = "", value: float = 0):
        super().__init__()
        self.total = total
        self.value = value
        self.description = description
        self.status = "running"  # running | done | failed | stopped
        self.started_at = time.time()
        self.ended_at: float | None = None

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return min(1.0, self.value / self.total)

    @property
    def elapsed_s(self) -> float:
        return (self.ended_at or time.time()) - self.started_at

    def update(self, *, value: float | None = None, total: float | None = None, description: str | None = None) -> None:
        with self._lock:
            if value is not None:
                self.value = value
            if total is not None:
                self.total = total
            if description is not None:
                self.description = description
            self._changed()

    def advance(self, step: float = 1) -> None:
        with self._lock:
            self.value += step
            self._changed()

    def finish(self, status: str = "done") -> None:
        """Freeze the clock and mark the bar done, failed or stopped."""
        if status not in ("done", "failed", "stopped"):
            raise ValueError(f"`status` must be 'done', 'failed' or 'stopped', got {status!r}")
        with self._lock:
            self.status = status
            self.ended_at = time.time()
            if status == "done" and self.total:
                self.value = max(self.value, self.total)
            self._changed()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "value": self.value,
                "total": self.total,
                "description": self.description,
                "status": self.status,
                "started_at": self.started_at,
                "ended_at": self.ended_at,
            }

    def __repr__(self) -> str:
        width = 24
        fraction = self.fraction
        if fraction is None:
            bar, count = "·" * width, f"{self.value:g}"
        else:
            filled = round(fraction * width)
            bar = "█" * filled + "░" * (width - filled)
            count = f"{self.value:g}/{self.total:g} ({fraction:.0%})"
        label = f"{self.description}: " if self.description else ""
        state = "" if self.status == "running" else f" [{self.status}]"
        return f"{label}{bar} {count} {_clock(self.elapsed_s)}{state}"


class LineChart(Observable):
    """Named series of (x, y) points for a live line chart, e.g. score per trial and best score so far.

    Example:
        >>> chart = LineChart(title="score", x_label="trial", y_label="score")
        >>> chart.add_point("score", 1, 0.5); chart.add_point("score", 2, 0.75)
        >>> chart.last("score")
        (2.0, 0.75)
    """

    def __init__(self, title: str = "", x_label: str = "x", y_label: str = "y", max_points: int = 500):
        super().__init__()
        self.title = title
        self.x_label = x_label
        self.y_label = y_label
        # Longer series are thinned to this many points when sent to a view, so the widget stays light.
        self.max_points = max_points
        self.series: dict[str, list[tuple[float, float]]] = {}

    def add_point(self, series: str, x: float, y: float) -> None:
        if not (isinstance(y, (int, float)) and math.isfinite(y)):
            raise ValueError(f"`y` must be a finite number, got {y!r} for series {series!r}")
        with self._lock:
            self.series.setdefault(series, []).append((float(x), float(y)))
            self._changed()

    def last(self, series: str) -> tuple[float, float] | None:
        points = self.series.get(series)
        return points[-1] if points else None

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "title": self.title,
                "x_label": self.x_label,
                "y_label": self.y_label,
                "series": [{"name": name, "points": _thin(points, self.max_points)} for name, points in self.series.items()],
            }

    def __repr__(self) -> str:
        with self._lock:
            parts = []
            for name, points in self.series.items():
                ys = [y for _, y in points]
                parts.append(f"{name}: {_sparkline(ys)} last={ys[-1]:.4g} max={max(ys):.4g} (n={len(ys)})")
        head = self.title or "LineChart"
        return head + ("\n  " + "\n  ".join(parts) if parts else " (no points yet)")

    def _repr_html_(self) -> str:
        title = f"<div><b>{html.escape(self.title)}</b></div>" if self.title else ""
        return f'<div class="compound-chart">{title}{chart_svg(self)}</div>'


# Series colours of the static SVG; the same order as compound/widgets/chart.js.
SERIES_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def chart_svg(chart: LineChart, width: int = 520, height: int = 200) -> str:
    """The chart as one inline `<svg>` (axes, min/max ticks, a polyline per series, a legend): no script, no kernel.

    Example:
        >>> chart = LineChart(title="score"); chart.add_point("score", 1, 0.5); chart.add_point("score", 2, 0.75)
        >>> chart_svg(chart).startswith("<svg") and chart_svg(chart).count("<polyline") == 1
        True
    """
    snap = chart.snapshot()
    left, right, top, bottom = 44, 12, 12, 40
    x0, x1, y0, y1 = left, width - right, height - bottom, top
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="compound-chart-svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{html.escape(snap["title"] or "chart")}" '
             'font-family="sans-serif" font-size="11">',
             f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#888"/>',
             f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#888"/>',
             f'<text x="{(x0 + x1) / 2}" y="{height - 22}" text-anchor="middle" fill="#666">'
             f'{html.escape(snap["x_label"])}</text>']
    points = [p for s in snap["series"] for p in s["points"]]
    if points:
        xmin, xmax = min(p[0] for p in points), max(p[0] for p in points)
        ymin, ymax = min(p[1] for p in points), max(p[1] for p in points)
        if xmin == xmax:
            xmin, xmax = xmin - 1, xmax + 1
        if ymin == ymax:
            ymin, ymax = ymin - 0.5, ymax + 0.5

        def sx(x: float) -> float:
            return x0 + (x - xmin) / (xmax - xmin) * (x1 - x0)

        def sy(y: float) -> float:
            return y0 - (y - ymin) / (ymax - ymin) * (y0 - y1)

        for value, y in ((ymin, y0), (ymax, y1 + 8)):
            parts.append(f'<text x="{x0 - 4}" y="{y:.1f}" text-anchor="end" fill="#666">{value:.3g}</text>')
        for value, anchor in ((xmin, "start"), (xmax, "end")):
            parts.append(f'<text x="{sx(value):.1f}" y="{y0 + 14}" text-anchor="{anchor}" fill="#666">{value:.3g}</text>')
        legend_x = x0
        for i, series in enumerate(snap["series"]):
            color = SERIES_COLORS[i % len(SERIES_COLORS)]
            coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in series["points"])
            name = html.escape(series["name"])
            parts.append(f'<polyline data-series="{name}" points="{coords}" fill="none" stroke="{color}" stroke-width="2"/>')
            if len(series["points"]) <= 60:
                parts += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{color}"/>' for x, y in series["points"]]
            parts.append(f'<rect x="{legend_x}" y="{height - 10}" width="10" height="8" fill="{color}"/>'
                         f'<text x="{legend_x + 14}" y="{height - 2}" fill="#444">{name}</text>')
            legend_x += 24 + 7 * len(series["name"])
    else:
        parts.append(f'<text x="{(x0 + x1) / 2}" y="{(y0 + y1) / 2}" text-anchor="middle" fill="#666">no points yet</text>')
    parts.append("</svg>")
    return "".join(parts)


def _thin(points: list[tuple[float, float]], limit: int) -> list[list[float]]:
    if len(points) <= limit:
        return [list(p) for p in points]
    step = len(points) / limit
    picked = [points[int(i * step)] for i in range(limit - 1)] + [points[-1]]
    return [list(p) for p in picked]


def _sparkline(values: Sequence[float], width: int = 20) -> str:
    ticks = "▁▂▃▄▅▆▇█"
    values = list(values)[-width:]
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return "".join(ticks[int((v - low) / span * (len(ticks) - 1))] for v in values)


@dataclass(frozen=True)
class Column:
    """One table column: the row key it shows, its header label and a Python format spec for numbers."""

    key: str
    label: str = ""
    format: str = ""  # e.g. ".3f"; applied in the text/HTML fallbacks and sent to the widget as `format`

    def render(self, value: Any) -> str:
        if value is None:
            return ""
        if self.format and isinstance(value, (int, float)):
            return format(value, self.format)
        return str(value)


class Table(Observable):
    """Rows of dicts under fixed columns; the widget sorts them by clicking a header.

    Example:
        >>> table = Table([Column("trial"), Column("score", format=".2f")])
        >>> table.add_row({"trial": 1, "score": 0.5})
        >>> print(table)
        trial  score
            1   0.50
    """

    def __init__(self, columns: Iterable[Column | str], *, sort_by: str | None = None, descending: bool = False,
                 text_rows: int = 12):
        super().__init__()
        self.columns = [c if isinstance(c, Column) else Column(c) for c in columns]
        if not self.columns:
            raise ValueError("`columns` must name at least one column, e.g. Table(['trial', 'score'])")
        keys = [c.key for c in self.columns]
        if sort_by is not None and sort_by not in keys:
            raise ValueError(f"`sort_by` must be one of the column keys {keys}, got {sort_by!r}")
        self.sort_by = sort_by
        self.descending = descending
        self.text_rows = text_rows  # the text repr shows the last rows only
        self.rows: list[dict[str, Any]] = []

    def add_row(self, row: dict[str, Any]) -> None:
        unknown = set(row) - {c.key for c in self.columns}
        if unknown:
            raise ValueError(f"row has keys {sorted(unknown)} that are not columns {[c.key for c in self.columns]}")
        with self._lock:
            self.rows.append(dict(row))
            self._changed()

    def sorted_rows(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = list(self.rows)
        if self.sort_by is None:
            return rows
        present = [r for r in rows if r.get(self.sort_by) is not None]
        missing = [r for r in rows if r.get(self.sort_by) is None]
        present.sort(key=lambda r: r[self.sort_by], reverse=self.descending)
        return present + missing

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "columns": [{"key": c.key, "label": c.label or c.key, "format": c.format} for c in self.columns],
                "rows": [dict(r) for r in self.rows],
                "sort_by": self.sort_by,
                "descending": self.descending,
            }

    def _cells(self, rows: list[dict[str, Any]]) -> list[list[str]]:
        return [[c.render(r.get(c.key)) for c in self.columns] for r in rows]

    def __repr__(self) -> str:
        rows = self.sorted_rows()
        shown = rows[-self.text_rows:]
        header = [c.label or c.key for c in self.columns]
        cells = self._cells(shown)
        widths = [max(len(h), *(len(row[i]) for row in cells)) if cells else len(h) for i, h in enumerate(header)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
        lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
        if len(rows) > len(shown):
            lines.insert(1, f"... {len(rows) - len(shown)} earlier rows")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c.label or c.key)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>"
            for row in self._cells(self.sorted_rows())
        )
        return f'<table class="compound-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
