"""Look inside DSPy programs: which modules a pipeline has, which model and adapter each one runs on, what each costs.

Example:
    >>> import dspy, compound as cp
    >>> view = cp.show(dspy.ChainOfThought("question -> answer"))
    >>> view.modules[0]["signature"]
    'question -> reasoning, answer'
"""

from compound.trace.costs import ModuleCost, ModuleCosts, ProgramCosts, costs
from compound.trace.show import PIPELINE_MIME_TYPE, PipelineView, describe_program, show

__all__ = ["PIPELINE_MIME_TYPE", "ModuleCost", "ModuleCosts", "PipelineView", "ProgramCosts", "costs",
           "describe_program", "show"]
