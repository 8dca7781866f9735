"""The cost–quality chart of a routing report as inline SVG: no plotting library, readable in a saved notebook.

Example:
    >>> svg = curve_svg([{"name": "knn", "kind": "router", "points": [[0, 0.5], [1, 0.7]]}], [], None)
    >>> svg.startswith("<svg") and "knn" in svg
    True
"""

from __future__ import annotations

import html
from typing import Any

WIDTH, HEIGHT = 520, 260
PAD = {"left": 48, "right": 120, "top": 12, "bottom": 36}
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
STYLE = {"random": ("#888888", "5,4"), "oracle": ("#222222", "2,3")}


def curve_svg(curves: list[dict[str, Any]], models: list[dict[str, Any]], current: dict[str, Any] | None,
              x_label: str = "relative cost (0 = cheapest model alone, 1 = most expensive alone)") -> str:
    """SVG of quality against relative cost: one polyline per curve, a dot per model alone, the current point.

    `curves`: [{"name", "kind", "points": [[x, quality], ...]}]; `models`: [{"name", "x", "quality"}];
    `current`: {"x", "quality"} or None.
    """
    xs = [p[0] for c in curves for p in c["points"]] + [m["x"] for m in models] + [0.0, 1.0]
    ys = [p[1] for c in curves for p in c["points"]] + [m["quality"] for m in models]
    x0, x1 = min(xs), max(xs)
    y0, y1 = (min(ys), max(ys)) if ys else (0.0, 1.0)
    if y1 - y0 < 1e-9:
        y0, y1 = y0 - 0.5, y1 + 0.5
    left, right = PAD["left"], WIDTH - PAD["right"]
    top, bottom = PAD["top"], HEIGHT - PAD["bottom"]

    def sx(x: float) -> float:
        return left + (x - x0) / ((x1 - x0) or 1.0) * (right - left)

    def sy(y: float) -> float:
        return bottom - (y - y0) / (y1 - y0) * (bottom - top)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="compound-routing-curve" width="{WIDTH}" '
             f'height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="10">',
             f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#999"/>',
             f'<line x1="{left}" y1="{bottom}" x2="{left}" y2="{top}" stroke="#999"/>',
             f'<text x="{(left + right) / 2:.1f}" y="{HEIGHT - 6}" text-anchor="middle">{html.escape(x_label)}</text>',
             f'<text x="12" y="{(top + bottom) / 2:.1f}" text-anchor="middle" '
             f'transform="rotate(-90 12 {(top + bottom) / 2:.1f})">quality</text>']
    for value, y in ((y0, bottom), (y1, top + 8)):
        parts.append(f'<text x="{left - 4}" y="{y:.1f}" text-anchor="end">{value:.2f}</text>')
    for value in (x0, x1):
        parts.append(f'<text x="{sx(value):.1f}" y="{bottom + 12}" text-anchor="middle">{value:.2f}</text>')
    legend_y = top + 4
    for i, curve in enumerate(curves):
        color, dash = STYLE.get(curve["kind"], (COLORS[i % len(COLORS)], ""))
        points = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in curve["points"])
        dashes = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.6"{dashes} points="{points}">'
                     f'<title>{html.escape(curve["name"])}</title></polyline>')
        parts.append(f'<line x1="{right + 8}" y1="{legend_y}" x2="{right + 26}" y2="{legend_y}" stroke="{color}" '
                     f'stroke-width="2"{dashes}/><text x="{right + 30}" y="{legend_y + 3}">'
                     f'{html.escape(curve["name"])}</text>')
        legend_y += 14
    for model in models:
        cx, cy = sx(model["x"]), sy(model["quality"])
        parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3.5" fill="#fff" stroke="#333"/>'
                     f'<text x="{cx + 5:.1f}" y="{cy - 5:.1f}">{html.escape(model["name"])}</text>')
    if current is not None:
        parts.append(f'<circle cx="{sx(current["x"]):.1f}" cy="{sy(current["quality"]):.1f}" r="5" fill="#d62728">'
                     '<title>current threshold</title></circle>')
    parts.append("</svg>")
    return "".join(parts)
