"""`cp.curate` and `cp.synthesize`: audit DSPy training data and label new data with a stronger model.

`cp.curate(examples, against=..., program=...)` finds exact and near duplicates, leaks of other splits, label
issues, outliers, class imbalance and a value per example, and returns a `CurationReport` (text, HTML, a widget in
Jupyter) whose `clean()` gives the kept examples. `cp.synthesize(target, inputs, teacher=...)` labels inputs with
a teacher model and keeps only the labels that pass its checks.

Example:
    >>> import compound as cp
    >>> triage = cp.zoo.tasks["triage"]
    >>> report = cp.curate(triage.train[:200], against={"test": triage.test})
    >>> report.kinds
    ('duplicate', 'leak', 'label', 'outlier', 'low_value', 'imbalance')
"""

import sys
import types

from compound.curate.audit import curate
from compound.curate.encode import CharNgramEncoder
from compound.curate.report import CurationReport
from compound.curate.synthesize import Synthesized, synthesize

__all__ = ["CharNgramEncoder", "CurationReport", "Synthesized", "curate", "synthesize"]


class _CallableModule(types.ModuleType):
    """Importing `compound.curate` binds this package to `compound.curate`, shadowing the `cp.curate` function;
    calling the package runs the function, so `cp.curate(...)` works either way."""

    def __call__(self, *args, **kwargs):
        return curate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
