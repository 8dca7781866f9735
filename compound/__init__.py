"""compound: DSPy pipelines of small fine-tuned models, served, routed, tuned and optimized inside a notebook.

Example:
    >>> import dspy, compound as cp
    >>> lm = cp.LM("HuggingFaceTB/SmolLM2-135M-Instruct")   # doctest: +SKIP
    >>> dspy.configure(lm=lm)                                 # doctest: +SKIP

Names are imported lazily so that `import compound` stays cheap (torch and dspy load on first use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from compound._lazy import lazy_names

__version__ = "0.1.0"

# public name -> module that defines it; each capability adds its names here.
_LAZY: dict[str, str] = {
    "LM": "compound.lm",
    "Engine": "compound.lm",
    "EngineConfig": "compound.lm",
    "SamplingParams": "compound.lm",
    "loaded_models": "compound.lm",
    "show": "compound.trace",
    "costs": "compound.trace",
    "zoo": "compound.zoo",  # a subpackage: `cp.zoo` is the module itself
    "CompactAdapter": "compound.zoo.adapter",
    "optimize": "compound.optimize.run",
    "OptimizationJob": "compound.optimize.job",
    "jobs": "compound.jobs",  # a module: cp.jobs.list_jobs(), cp.jobs.subscribe(...)
    "widgets": "compound.widgets",  # a subpackage: Progress, LineChart, Table and their widgets
    "curate": "compound.curate.audit",
    "CurationReport": "compound.curate.report",
    "synthesize": "compound.curate.synthesize",
    "route": "compound.route",  # a subpackage: cp.route.collect, cp.route.KNNRouter, cp.route.evaluate, ...
    "Routed": "compound.route.routed",
    "adapters": "compound.adapters",  # a module: cp.adapters.list(), load(name), delete, export
    "finetune": "compound.tune",
    "FinetuneJob": "compound.tune",
    "TrainConfig": "compound.tune",
}

__all__ = sorted([*_LAZY, "__version__"])

if TYPE_CHECKING:  # pragma: no cover
    from compound.lm import LM, Engine, EngineConfig, SamplingParams, loaded_models
    from compound import zoo
    from compound.trace import costs, show
    from compound.zoo.adapter import CompactAdapter
    from compound import jobs, widgets
    from compound.optimize.job import OptimizationJob
    from compound.optimize.run import optimize
    from compound.curate.audit import curate
    from compound.curate.report import CurationReport
    from compound.curate.synthesize import synthesize
    from compound import route
    from compound.route.routed import Routed
    from compound import adapters
    from compound.tune import FinetuneJob, TrainConfig, finetune


__getattr__, __dir__ = lazy_names(__name__, _LAZY, __all__)


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where Jupyter finds compound's prebuilt JupyterLab extension (used by `jupyter-builder develop`)."""
    return [{"src": "labextension", "dest": "compound-jupyterlab"}]


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext compound`: connect this kernel to the JupyterLab "Compound" sidebar."""
    from compound.jupyter import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from compound.jupyter import unload_ipython_extension as unload

    unload(ipython)


def _connect_sidebar_when_in_a_kernel() -> None:
    # `import compound` in a notebook is enough for the sidebar and the live views. Checked through sys.modules so
    # that scripts and tests never import IPython; a failure here must never break the import itself. This package
    # root is the one place below the views that names compound.widgets: it wires the layers together.
    import sys

    ipython = sys.modules.get("IPython")  # same test as compound.jupyter.in_jupyter_kernel, without importing it
    if ipython is None or getattr(ipython.get_ipython(), "kernel", None) is None:
        return
    try:
        from compound.jupyter import start_kernel_bridge
        from compound.widgets._live import install_formatters

        start_kernel_bridge()
        install_formatters()
    except Exception as exc:  # pragma: no cover - reported, not raised
        import warnings

        warnings.warn(f"compound: the JupyterLab sidebar is unavailable in this kernel ({exc})", stacklevel=2)


_connect_sidebar_when_in_a_kernel()
