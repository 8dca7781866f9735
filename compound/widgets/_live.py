"""The view registry at work: which widget shows an object, and the IPython display formatters that show it live.

`install_formatters()` runs once per kernel (compound's `import` in a kernel calls it): for every `VIEWS` entry it
registers, by name, a mime-bundle formatter in IPython, so the model modules are not imported for it. The formatter
adds the widget view to the object's own text and HTML, only when anywidget is installed; one view per object is
kept (and reused) until it is closed.
"""

from __future__ import annotations

import importlib
import sys
import weakref
from typing import Any

from compound.jupyter import in_jupyter_kernel as in_kernel  # one definition of "inside a kernel"
from compound.widgets import VIEWS

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
_views: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()  # object -> its open view
_installed_in: set[int] = set()  # ids of the IPython shells that have the formatters


def widgets_installed() -> bool:
    try:
        import anywidget  # noqa: F401
    except ImportError:
        return False
    return True


def _type_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def view_class(obj: Any) -> type:
    """The widget class `VIEWS` assigns to `obj` (the most specific entry in its type's MRO).

    Example:
        >>> from compound.observe import Table
        >>> view_class(Table(["a"])).__name__
        'TableWidget'
    """
    for cls in type(obj).__mro__:
        target = VIEWS.get(_type_name(cls))
        if target is not None:
            module, _, name = target.partition(":")
            return getattr(importlib.import_module(module), name)
    known = ", ".join(sorted(key.rsplit(".", 1)[-1] for key in VIEWS))
    raise TypeError(f"no widget shows a {type(obj).__name__}; compound.widgets.VIEWS has views for {known}")


def view_for(obj: Any) -> Any:
    """The open view of `obj`, or a new one (kept until it is closed)."""
    try:
        view = _views.get(obj)
    except TypeError:  # an object that cannot be weakly referenced
        view = None
    if view is None or getattr(view, "comm", None) is None:  # closed views have no comm
        view = view_class(obj)(obj)
        try:
            _views[obj] = view
        except TypeError:  # an object that cannot be weakly referenced just gets a new view each time
            pass
    return view


def show(obj: Any):
    """The live widget for a Progress, LineChart, Table, Job or any model in `VIEWS` (display it, or end a cell with it).

    Example:
        >>> from compound.widgets import Progress, show
        >>> show(Progress(total=3)).total   # needs anywidget (pip install compound[jupyter])
        3.0
    """
    if not widgets_installed():
        raise ImportError("compound widgets need anywidget: pip install 'compound[jupyter]'")
    return view_for(obj)


def live_bundle(obj: Any) -> dict[str, Any]:
    """The mime-bundle formatter IPython calls for registered model types: the widget view part, or {} without one."""
    if not (in_kernel() and widgets_installed()):
        return {}
    data = view_for(obj)._repr_mimebundle_()
    if isinstance(data, tuple):  # (data, metadata) in some ipywidgets versions
        data = data[0]
    return {key: value for key, value in (data or {}).items() if key == WIDGET_MIME}


def register_view(model_type: str, view: str) -> None:
    """Show objects of `model_type` ("module.Class") with `view` ("module:ViewClass"); the one-line registration.

    Example:
        >>> register_view("compound.observe.Table", "compound.widgets.table:TableWidget")
    """
    if "." not in model_type or ":" not in view:
        raise ValueError(
            f"register_view takes ('package.module.ModelClass', 'package.module:ViewClass'), got {model_type!r}, {view!r}"
        )
    VIEWS[model_type] = view
    shell = _kernel_shell()
    if shell is not None and id(shell) in _installed_in:
        _register(shell, model_type)


def install_formatters() -> bool:
    """Register the live views with this kernel's IPython display formatter (once); False outside a kernel."""
    shell = _kernel_shell()
    if shell is None:
        return False
    if id(shell) not in _installed_in:
        for model_type in VIEWS:
            _register(shell, model_type)
        _installed_in.add(id(shell))
    return True


def _kernel_shell() -> Any:
    if not in_kernel():
        return None
    return sys.modules["IPython"].get_ipython()


def _register(shell: Any, model_type: str) -> None:
    module, _, name = model_type.rpartition(".")
    shell.display_formatter.mimebundle_formatter.for_type_by_name(module, name, live_bundle)
