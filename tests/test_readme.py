"""The README's zoo, pipeline and streaming snippets work as printed: they run here, in order, on the offline zoo."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from compound.testing import dspy_settings_restored

README = Path(__file__).resolve().parents[1] / "README.md"
# Sections whose snippets use only the zoo (the others load hub models, which tests cannot reach).
SECTIONS = ("The offline zoo", "What a pipeline is made of", "Streaming, async and quiet output")


def snippets(section: str) -> list[str]:
    text = README.read_text()
    start = text.index(f"## {section}")
    end = text.find("\n## ", start + 1)
    blocks = re.findall(r"^( *)```python\n(.*?)^\1```", text[start : end if end > 0 else None], re.M | re.S)
    return ["\n".join(line[len(indent):] for line in code.splitlines()) for indent, code in blocks]


def test_every_section_has_snippets():
    assert all(snippets(section) for section in SECTIONS)


@pytest.mark.slow
def test_the_snippets_run_as_printed_and_print_what_the_readme_shows():
    namespace: dict = {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), dspy_settings_restored():  # the snippets dspy.configure(...)
        for section in SECTIONS:
            for code in snippets(section):
                exec(compile(code, f"README.md: {section}", "exec"), namespace)
    out = printed.getvalue()
    assert "SupportDesk: 2 predictors, adapter CompactAdapter (configured)" in out
    assert "lm=local/zoo-tiny (own)" in out and "lm=local/zoo-small (default)" in out
    assert re.search(r"^triage\s+local/zoo-tiny\s+40\s+0\s", out, re.M), out
    assert re.search(r"^extract\s+local/zoo-small\s+40\s+0\s", out, re.M), out
    assert namespace["job"].status == "done" and len(namespace["job"].result().demos) > 4
    assert namespace["prediction"].category == "billing"  # the async pipeline
    streamed = out.rsplit("\n", 1)[-1]  # the last print(..., end="|") calls
    assert streamed.replace("|", "") == "technical" and streamed.count("|") >= 1, streamed
