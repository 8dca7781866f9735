"""`cp.optimize`: run any DSPy optimizer in the background, watch it live, stop it and keep the best program so far.

Example:
    >>> import dspy, compound as cp
    >>> triage = cp.zoo.tasks["triage"]
    >>> dspy.configure(adapter=cp.CompactAdapter())
    >>> program = dspy.Predict(triage.signature)
    >>> program.lm = cp.zoo.lm("tiny")
    >>> job = cp.optimize(program, triage.train[:8], "BootstrapFewShot", metric=triage.metric)
    >>> better = job.result()
    >>> len(program.demos), len(better.demos)    # the program you passed is left as it was
    (0, 8)
"""

import sys
import types

from compound.optimize.job import OptimizationJob
from compound.optimize.optimizers import OPTIMIZERS
from compound.optimize.run import TextReporter, optimize
from compound.optimize.tracker import StopOptimization

__all__ = ["OPTIMIZERS", "OptimizationJob", "StopOptimization", "TextReporter", "optimize"]


class _CallableModule(types.ModuleType):
    """Importing `compound.optimize` binds this package to `compound.optimize`, shadowing the `cp.optimize`
    function; calling the package runs the function, so `cp.optimize(...)` works in either case."""

    def __call__(self, *args, **kwargs):
        return optimize(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
