"""compound inside Jupyter: the kernel end of the JupyterLab sidebar.

`import compound` in a Jupyter kernel registers the `compound` comm target (so does `%load_ext compound`); the
sidebar then shows this kernel's models, engines, jobs and device memory, and its Cancel buttons stop jobs.

Example:
    >>> from compound.jupyter import kernel_snapshot
    >>> kernel_snapshot()["type"]
    'snapshot'
"""

from __future__ import annotations

import logging
import os
import sys

from compound.jupyter.bridge import COMM_TARGET, KernelBridge
from compound.jupyter.snapshot import kernel_snapshot

__all__ = [
    "COMM_TARGET",
    "KernelBridge",
    "in_jupyter_kernel",
    "kernel_bridge",
    "kernel_snapshot",
    "start_kernel_bridge",
]

_bridge: KernelBridge | None = None


def in_jupyter_kernel() -> bool:
    """True inside an IPython kernel (notebook, lab, console); False in scripts, pytest or terminal IPython."""
    ipython_module = sys.modules.get("IPython")
    if ipython_module is None:
        return False
    shell = ipython_module.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def kernel_bridge() -> KernelBridge | None:
    """The bridge started in this kernel, or None."""
    return _bridge


def start_kernel_bridge() -> KernelBridge | None:
    """Register the sidebar's comm target once per kernel; does nothing outside a Jupyter kernel."""
    global _bridge
    if _bridge is None and in_jupyter_kernel():
        _bridge = KernelBridge()
        # The sidebar lives in frontends of a Jupyter server, whose sessions name their kernels (JPY_SESSION_NAME).
        # Headless runs (nbconvert, nbclient, papermill) have no sidebar, and they log a warning for every comm
        # a kernel opens to a target they do not know: announce nothing there.
        _bridge.register(announce=bool(os.environ.get("JPY_SESSION_NAME")))
    return _bridge


def load_ipython_extension(ipython) -> None:
    """`%load_ext compound`: start the sidebar bridge (a no-op with a note outside a kernel)."""
    if start_kernel_bridge() is None:
        logging.getLogger(__name__).warning(
            "compound: the JupyterLab sidebar needs a Jupyter kernel; terminal IPython has no frontend to talk to."
        )


def unload_ipython_extension(ipython) -> None:
    global _bridge
    if _bridge is not None:
        _bridge.close()
        _bridge = None
