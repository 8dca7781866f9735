"""pytest set-up for the whole repository: `tests/` and the `>>>` examples of every module under `compound/`."""

import os

import pytest

# Tests and doctests never reach a model hub: everything they load is built here or shipped in a package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _doctests_leave_dspy_settings_as_they_found_them(request):
    """A docstring example may `dspy.configure(...)` as a user would; the next example must not inherit it."""
    if not isinstance(request.node, pytest.DoctestItem):
        yield
        return
    from compound.testing import dspy_settings_restored

    with dspy_settings_restored():
        yield


# conftest.py files are plugins, not modules with examples: collected as doctest modules too, the ones of two test
# folders (both imported as `conftest`) collide when a run names both folders (`pytest tests/lm tests/optimize`).
collect_ignore_glob = ["tests/*/conftest.py", "tests/conftest.py"]


@pytest.fixture(autouse=True)
def _doctests_keep_their_adapters_apart(request, tmp_path, monkeypatch):
    """Examples that fine-tune save to `cp.adapters`: a fresh registry each, never the user's."""
    if isinstance(request.node, pytest.DoctestItem):
        monkeypatch.setenv("COMPOUND_ADAPTERS", str(tmp_path / "adapters"))
    yield
