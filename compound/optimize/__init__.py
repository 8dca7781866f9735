"""`cp.optimize`: run any DSPy optimizer in the background, watch it live, stop it and keep the best program so far.

Example:
    >>> import compound as cp
    >>> job = cp.optimize(program, trainset, optimizer="BootstrapFewShot", metric=exact)  # doctest: +SKIP
    >>> program = job.result()                                                           # doctest: +SKIP
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
