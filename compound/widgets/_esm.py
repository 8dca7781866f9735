"""Assemble a widget's ES module from its .js file plus the shared `_dom.js` helpers.

anywidget loads `_esm` from a blob URL, where relative imports cannot resolve, so the shared helpers are
inlined here instead of imported: plain text concatenation, no bundler, nothing fetched at runtime.
"""

from __future__ import annotations

import pathlib
import re

_HERE = pathlib.Path(__file__).parent
_IMPORT_DOM = re.compile(r'^import \{[^}]*\} from "\./_dom\.js";\n', re.MULTILINE)


def esm(filename: str) -> str:
    """The ES module text of `filename` (next to this file) with `_dom.js` inlined."""
    source = (_HERE / filename).read_text()
    if not _IMPORT_DOM.search(source):
        return source
    return (_HERE / "_dom.js").read_text() + "\n" + _IMPORT_DOM.sub("", source)


def css() -> str:
    return (_HERE / "widgets.css").read_text()
