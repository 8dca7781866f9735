"""compound's own output is quiet: no loading bars, no third-party warning before compound's own error, one-line
parse errors, and nothing for headless notebook runs (nbconvert, nbclient) to complain about."""

from __future__ import annotations

import logging
import subprocess
import sys

import dspy
import pytest

import compound as cp
from compound.lm.prompt import prompt_ids
from compound.testing import scripted_lm, tiny_llama, tiny_tokenizer


def test_loading_a_model_folder_prints_nothing(tmp_path):
    model, tokenizer = tiny_llama(seed=0)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    code = f"import compound as cp\nlm = cp.LM({str(tmp_path)!r}, device='cpu')\nprint(lm.model)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stderr == "", out.stderr  # no "Loading weights" bar
    assert out.stdout.strip().startswith("local/")


def test_a_prompt_longer_than_the_tokenizer_limit_gets_no_transformers_warning(capfd):
    tokenizer = tiny_tokenizer()
    tokenizer.model_max_length = 16  # what a model folder's tokenizer_config may say; the engine checks the context
    ids = prompt_ids(tokenizer, "the quick brown fox jumps over the lazy dog " * 8)
    assert len(ids) > 16
    assert "Token indices sequence length" not in capfd.readouterr().err


def test_an_unreadable_answer_is_one_line_everywhere_dspy_reports_it(caplog):
    predict = dspy.Predict("ticket -> category")
    predict.lm = scripted_lm(["", "category: billing"])
    devset = [dspy.Example(ticket=t, category="billing").with_inputs("ticket") for t in ("a", "b")]
    with dspy.context(adapter=cp.CompactAdapter()), caplog.at_level(logging.ERROR):
        with pytest.raises(dspy.utils.exceptions.AdapterParseError) as raised:
            predict(ticket="a")
        result = dspy.Evaluate(devset=devset[1:], metric=lambda e, p, t=None: p.category == e.category,
                               num_threads=1)(predict)
    assert str(raised.value) == "CompactAdapter: the model's answer was empty (expected `category: ...` lines)"
    assert result.score == 100.0
    assert all("\n" not in record.getMessage() for record in caplog.records)


def test_a_headless_notebook_run_gets_no_comm_warning(tmp_path, caplog):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import compound\nprint('ok')")])
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": tmp_path}})
    with caplog.at_level(logging.WARNING):
        client.execute()
    assert notebook.cells[0].outputs[0]["text"] == "ok\n"
    assert not [r for r in caplog.records if "comm target" in r.getMessage()], [r.getMessage() for r in caplog.records]
