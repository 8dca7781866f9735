"""Lazy public names for compound's packages: importing a package stays cheap (torch and dspy load on first use).

Example:
    >>> from compound._lazy import lazy_names
    >>> __getattr__, __dir__ = lazy_names("compound", {"show": "compound.trace"}, ["show"])
    >>> __getattr__("show").__name__
    'show'
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any


def lazy_names(package: str, table: dict[str, str], public: Sequence[str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`, whose lazy names map to the modules that define them in `table`.

    A name whose module is `package.name` is that submodule itself. A value is kept in the package on first use, so
    later lookups never come back here.
    """
    listed = sorted(public)

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        imported = importlib.import_module(module)
        value = imported if module == f"{package}.{name}" else getattr(imported, name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return listed

    return __getattr__, __dir__
