"""Look inside DSPy programs: which modules a pipeline has and which model/adapter each one runs on.

Example:
    >>> import dspy, compound as cp
    >>> view = cp.show(dspy.ChainOfThought("question -> answer"))
    >>> view.modules[0]["signature"]
    'question -> reasoning, answer'
"""

from compound.trace.show import PIPELINE_MIME_TYPE, PipelineView, describe_program, show

__all__ = ["PIPELINE_MIME_TYPE", "PipelineView", "describe_program", "show"]
