"""Loading from folders and hub ids, device/dtype choice, prompt rendering, errors that say what to do."""

import dspy
import pytest
import torch

import compound as cp
from compound.lm import pick_device, pick_dtype, render_prompt
from compound.lm.loading import load
from compound.testing import tiny_llama


def test_auto_device_and_dtype_on_this_machine():
    if not torch.cuda.is_available():
        assert pick_device().type in {"cpu", "mps"}
        assert pick_dtype("auto", torch.device("cpu")) == torch.float32
    assert pick_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ValueError, match="unknown `dtype`"):
        pick_dtype("float13", torch.device("cpu"))


def test_folder_loads_once_per_process(tmp_path):
    model, tok = tiny_llama(3)
    folder = tmp_path / "my-tiny"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    a = cp.LM(str(folder), cache=False, max_tokens=4)
    b = cp.LM(folder, cache=False)
    assert a.model == b.model == "local/my-tiny"
    assert cp.lm.engine_of(a).model is cp.lm.engine_of(b).model
    assert isinstance(a("hello")[0], str)
    assert load(str(folder)).model.dtype == torch.float32


def test_missing_folder_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model folder"):
        cp.LM(str(tmp_path / "nope"))


def test_hub_id_without_network_says_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="no network"):
        cp.LM("compound-tests/not-a-real-model")


def test_model_object_needs_a_name():
    model, tok = tiny_llama(0)
    with pytest.raises(ValueError, match="name="):
        cp.LM(model, tokenizer=tok)


def test_render_prompt_with_and_without_chat_template():
    _, tok = tiny_llama(0)
    msgs = [{"role": "user", "content": "Hi"}]
    assert render_prompt(tok, "Be brief.", msgs).endswith("<|user|>\nHi<|end|>\n<|assistant|>\n")
    plain = tok.__class__(tokenizer_object=tok.backend_tokenizer)
    plain.chat_template = None
    assert render_prompt(plain, "Be brief.", msgs) == "System: Be brief.\n\nUser: Hi\n\nAssistant:"


def test_template_without_system_role_merges_it_into_the_user_turn():
    _, tok = tiny_llama(0)
    strict = tok.__class__(tokenizer_object=tok.backend_tokenizer)
    strict.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
        "{% endif %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}[assistant]"
    )
    assert render_prompt(strict, "Rules.", [{"role": "user", "content": "Q"}]) == "[user] Rules.\n\nQ\n[assistant]"


def test_context_length_error_reaches_dspy():
    model, tok = tiny_llama(5, max_pos=64)
    lm = cp.LM(model, tokenizer=tok, name="short-context", cache=False, num_retries=0)
    with pytest.raises(Exception) as info:
        lm("word " * 200)
    chain = [info.value, info.value.__cause__, info.value.__context__]
    assert any("does not fit the context" in str(e) for e in chain if e is not None)
    assert dspy  # DSPy maps ContextLengthError to its own ContextWindowExceededError


def test_the_engine_modules_never_import_dspy():
    """Only the DSPy boundary (compound.lm.dspy_lm) imports DSPy; the engine, the zoo's resolver hook and the
    errors load without it."""
    import subprocess
    import sys

    code = ("import sys, compound.lm.engine, compound.lm.loading, compound.lm.errors, compound.zoo; "
            "assert 'dspy' not in sys.modules, sorted(m for m in sys.modules if m.startswith('dspy'))[:3]")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
