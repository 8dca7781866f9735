"""When is there a live notebook frontend, and which widget shows which plain object.

Kept free of Jupyter imports at module level: plain models call `live_view_bundle` from their rich repr, and it
only imports anywidget once it knows an IPython kernel is running.
"""

from __future__ import annotations

import sys
from typing import Any

from compound.jupyter import in_jupyter_kernel as in_kernel  # one definition of "inside a kernel"


def widgets_installed() -> bool:
    try:
        import anywidget  # noqa: F401
    except ImportError:
        return False
    return True


def view_for(obj: Any):
    """The widget that displays `obj` (a Progress, LineChart, Table, Job or OptimizationJob)."""
    from compound.jobs import Job
    from compound.widgets.chart import LineChartWidget
    from compound.widgets.job import JobWidget
    from compound.observe import LineChart, Progress, Table
    from compound.widgets.progress import ProgressWidget
    from compound.widgets.table import TableWidget

    optimize = sys.modules.get("compound.optimize.job")
    if optimize is not None and isinstance(obj, optimize.OptimizationJob):
        from compound.widgets.optimizer import OptimizationView

        return OptimizationView(obj)
    tune = sys.modules.get("compound.tune.job")
    if tune is not None and isinstance(obj, tune.FinetuneJob):
        from compound.widgets.training import TrainingView

        return TrainingView(obj)
    for kind, view in ((Progress, ProgressWidget), (LineChart, LineChartWidget), (Table, TableWidget), (Job, JobWidget)):
        if isinstance(obj, kind):
            return view(obj)
    raise TypeError(
        f"no widget shows a {type(obj).__name__}; pass a Progress, LineChart, Table, Job or OptimizationJob"
    )


def live_view_bundle(obj: Any) -> dict[str, Any]:
    """The widget-view part of a mime bundle for `obj` when a kernel with anywidget runs, else {}."""
    if not (in_kernel() and widgets_installed()):
        return {}
    data = view_for(obj)._repr_mimebundle_()
    if isinstance(data, tuple):  # (data, metadata) in some ipywidgets versions
        data = data[0]
    return {key: value for key, value in (data or {}).items() if key != "text/plain"}


def show(obj: Any):
    """The live widget for a Progress, LineChart, Table, Job or OptimizationJob (display it, or make it a cell's value).

    Example:
        >>> from compound.widgets import Progress, show
        >>> show(Progress(total=3)).total   # needs anywidget (pip install compound[jupyter])
        3.0
    """
    if not widgets_installed():
        raise ImportError("compound widgets need anywidget: pip install 'compound[jupyter]'")
    return view_for(obj)
