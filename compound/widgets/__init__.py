"""The widget kit: a progress bar, a live line chart, a sortable table and job views, over plain models.

Models (`Progress`, `LineChart`, `Table`, `Column`) are plain thread-safe Python objects with text and HTML
reprs; they import nothing from Jupyter. The widgets (`ProgressWidget`, `LineChartWidget`, `TableWidget`,
`JobWidget`, `OptimizationView`) are anywidget views that follow a model; they load anywidget when first used.
In a notebook, displaying a model shows its widget.

Example:
    >>> from compound.widgets import Progress
    >>> bar = Progress(total=3, description="steps")
    >>> bar.advance()
    >>> bar.fraction
    0.3333333333333333
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Column": "compound.observe",
    "LineChart": "compound.observe",
    "Progress": "compound.observe",
    "Table": "compound.observe",
    "ProgressWidget": "compound.widgets.progress",
    "LineChartWidget": "compound.widgets.chart",
    "TableWidget": "compound.widgets.table",
    "JobWidget": "compound.widgets.job",
    "OptimizationView": "compound.widgets.optimizer",
    "TrainingView": "compound.widgets.training",
    "show": "compound.widgets._live",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'compound.widgets' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
