"""Layering, read from the source: views sit above everything, capabilities import no Jupyter, no package cycles.

Every `import` in every module counts, at module level or inside a function (a lazy import is still a dependency),
and so does a module named in a string to `importlib.import_module`.
"""

from __future__ import annotations

import ast
import pathlib

import compound

ROOT = pathlib.Path(compound.__file__).parent
VIEW_PACKAGE = "compound.widgets"
# Packages that fill plain models and must never reach for a notebook frontend.
CAPABILITIES = ("compound.optimize", "compound.tune", "compound.route", "compound.curate", "compound.merge")
JUPYTER = ("anywidget", "ipywidgets", "IPython", "ipykernel", "jupyter_client", "jupyter_server", "comm")


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: pathlib.Path) -> set[str]:
    """Absolute names of every module `path` imports (relative imports resolved), anywhere in the file."""
    tree = ast.parse(path.read_text(), str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            found |= {arg.value for arg in node.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)}
    return found


def modules() -> dict[str, set[str]]:
    return {module_name(path): imports_of(path) for path in sorted(ROOT.rglob("*.py"))}


def package_of(name: str) -> str:
    """The layer a module belongs to: compound.<first part> (compound.jobs, compound.optimize, ...)."""
    return ".".join(name.split(".")[:2])


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_nothing_below_the_views_imports_them():
    offenders = {
        name: sorted(i for i in imported if within(i, VIEW_PACKAGE))
        for name, imported in modules().items()
        if not within(name, VIEW_PACKAGE) and name != "compound"  # the package root wires the layers together
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_capabilities_and_models_import_no_jupyter():
    plain = [name for name in modules() if any(within(name, p) for p in CAPABILITIES) or name == "compound.observe"]
    assert "compound.optimize.job" in plain
    offenders = {name: sorted(i for i in modules()[name] if any(within(i, j) for j in JUPYTER)) for name in plain}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_no_import_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    for name, imported in modules().items():
        if name == "compound":
            continue
        for target in imported:
            if within(target, "compound") and target != "compound" and package_of(target) != package_of(name):
                graph.setdefault(package_of(name), set()).add(package_of(target))
    assert graph.get("compound.optimize") and graph.get("compound.widgets")  # the walk sees real edges

    cycles, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_the_walk_would_see_a_violation(tmp_path, monkeypatch):
    """The control case: a capability module that imports the views is caught."""
    bad = tmp_path / "compound" / "optimize" / "bad.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("def show(job):\n    from compound.widgets import show\n    return show(job)\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path / "compound")
    assert imports_of(bad) >= {"compound.widgets", "compound.widgets.show"}
    lazy = tmp_path / "compound" / "optimize" / "lazy.py"
    lazy.write_text("import importlib\nviews = importlib.import_module('compound.widgets')\n")
    assert "compound.widgets" in imports_of(lazy)
