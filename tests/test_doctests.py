"""Docstring examples are documentation that runs: every `>>>` example under compound/ is a doctest in `make test`
(pyproject: `testpaths` includes compound, `--doctest-modules`). These tests keep that promise honest."""

from __future__ import annotations

import ast
import doctest
import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import compound

# A skipped example must need what a test run does not have: a model hub (network) or a CUDA device.
HUB_ID = re.compile(r"""["'](?!local/|zoo:)[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+["']""")
GPU = re.compile(r"cuda|gpu", re.IGNORECASE)
DIRECTIVE = re.compile(r"\s*# doctest:.*")

# Modules whose examples may stay skipped for a while (e.g. while another branch rewrites them), with the reason.
# Remove an entry as soon as its examples run.
PENDING: dict[str, str] = {}


def compound_modules() -> list[str]:
    names = [compound.__name__]
    names += [m.name for m in pkgutil.walk_packages(compound.__path__, prefix="compound.")]
    return sorted(names)


def names_bound(source: str) -> set[str]:
    tree = ast.parse(source)
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


def names_used(source: str) -> set[str]:
    tree = ast.parse(source)
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def unjustified_skips(test: doctest.DocTest) -> list[str]:
    """Skipped examples that need neither the network nor a GPU (nor a name that an allowed skip bound)."""
    bad, from_allowed_skips = [], set()
    for example in test.examples:
        if not example.options.get(doctest.SKIP):
            continue
        if HUB_ID.search(example.source) or GPU.search(example.source) or names_used(example.source) & from_allowed_skips:
            from_allowed_skips |= names_bound(example.source)
        else:
            bad.append(f"{test.name}: {DIRECTIVE.sub('', example.source).strip()}")
    return bad


def module_skips(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    tests = doctest.DocTestFinder().find(module, module_name)
    return [skip for test in tests if test.name.startswith(module_name) for skip in unjustified_skips(test)]


def test_examples_are_skipped_only_for_the_network_or_a_gpu():
    found = {name: module_skips(name) for name in compound_modules()}
    offenders = {name: skips for name, skips in found.items() if skips and name not in PENDING}
    assert not offenders, (
        "these docstring examples are skipped but need neither a model hub nor a GPU; make them run "
        "(the zoo, compound.testing.scripted_lm or tiny_llama give real models offline):\n"
        + "\n".join(f"  {s}" for skips in offenders.values() for s in skips)
    )


def test_the_policy_tells_a_hub_model_from_an_excuse():
    docstring = (
        '>>> x = 1 + 1  # doctest: +SKIP\n'
        '>>> lm = cp.LM("HuggingFaceTB/SmolLM2-135M-Instruct")  # doctest: +SKIP\n'
        '>>> lm("hi")  # doctest: +SKIP\n'
        '>>> lm = cp.zoo.lm("tiny")  # doctest: +SKIP\n'
    )
    test = doctest.DocTestParser().get_doctest(docstring, {}, "compound.probe", "probe.py", 0)
    assert unjustified_skips(test) == ["compound.probe: x = 1 + 1", 'compound.probe: lm = cp.zoo.lm("tiny")']


def test_collecting_every_module_has_no_side_effects(tmp_path):
    """Importing every compound module (what --doctest-modules does) builds nothing, loads no model, opens no comm."""
    code = (
        "import pkgutil, importlib, sys, compound\n"
        "for m in pkgutil.walk_packages(compound.__path__, prefix='compound.'): importlib.import_module(m.name)\n"
        "import compound.lm\n"
        "assert compound.lm.loaded_models() == [], compound.lm.loaded_models()\n"
        "assert 'IPython' not in sys.modules or sys.modules['IPython'].get_ipython() is None\n"
    )
    env = {"COMPOUND_CACHE": str(tmp_path), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin",
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": ":".join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert not (tmp_path / "zoo").exists()  # no zoo build started


def test_two_test_folders_can_be_run_together():
    """--doctest-modules must not import two folders' conftest.py as one `conftest` module (an error before)."""
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                          "tests/lm", "tests/optimize"], cwd=root, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:]
