"""Live notebook views of compound's plain models: a progress bar, a line chart, a sortable table and job views.

The models (`Progress`, `LineChart`, `Table`, `Column` in `compound.observe`; jobs in `compound.jobs` and each
capability) are plain thread-safe Python objects with text and HTML reprs; they import nothing from here. This package
sits above them all: `VIEWS` says which widget shows which model type, and in a Jupyter kernel compound registers a
display formatter for every entry, so displaying such an object shows its live widget (anywidget; imported only
then). Everywhere else (scripts, nbval, GitHub) the object's own text and HTML show.

How a capability's plain model gets its view (one registration line):

1. Write the view as `compound/widgets/<name>.py` + `<name>.js`: a `ModelView` subclass (`compound/widgets/_view.py`)
   whose `_state(model)` maps the model's snapshot to synced traits; it follows the model through `model.watch(fn)`
   (an `Observable`, or any `compound.jobs.Job`) and detaches when closed.
2. Add one line to `VIEWS` below: `"<model module>.<ModelClass>": "compound.widgets.<name>:<ViewClass>"`, or call
   `register_view(...)` with the same two strings at run time. The most specific entry in the model's MRO wins, so a
   `Job` subclass without an entry of its own (e.g. a fine-tuning job) is shown by `JobWidget`, which takes any
   `compound.jobs.Job` (and shows its `stats()` when it has them).
3. The capability itself only fills its model and, to put the view under the running cell, calls `job.display()`
   (jobs) or lets the model be a cell's value; it never imports this package.

Example:
    >>> from compound.widgets import Progress, view_class
    >>> view_class(Progress(total=3)).__name__
    'ProgressWidget'
"""

from __future__ import annotations

from compound._lazy import lazy_names

# model type (its module and qualified name) -> the view that shows it ("module:Class"); see the docstring above.
VIEWS: dict[str, str] = {
    "compound.observe.Progress": "compound.widgets.progress:ProgressWidget",
    "compound.observe.LineChart": "compound.widgets.chart:LineChartWidget",
    "compound.observe.Table": "compound.widgets.table:TableWidget",
    "compound.jobs.Job": "compound.widgets.job:JobWidget",
    "compound.optimize.job.OptimizationJob": "compound.widgets.optimizer:OptimizationView",
    "compound.curate.report.CurationReport": "compound.widgets.curation:CurationWidget",
    "compound.route.report.RoutingReport": "compound.widgets.routing:RoutingWidget",
    "compound.tune.job.FinetuneJob": "compound.widgets.training:TrainingView",
}

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
    "TrialDiffWidget": "compound.widgets.trial_diff",
    "CurationWidget": "compound.widgets.curation",
    "RoutingWidget": "compound.widgets.routing",
    "TrainingView": "compound.widgets.training",
    "show": "compound.widgets._live",
    "register_view": "compound.widgets._live",
    "view_class": "compound.widgets._live",
}

__all__ = sorted([*_LAZY, "VIEWS"])


__getattr__, __dir__ = lazy_names(__name__, _LAZY, __all__)
