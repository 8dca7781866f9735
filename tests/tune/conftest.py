import copy

import pytest
import torch
from transformers import LlamaForCausalLM

from compound.testing import tiny_llama


@pytest.fixture(scope="module")
def random_base():
    """A random tiny Llama with a large init (varied greedy text), private to the module: serving adapters hooks it."""
    model, tok = tiny_llama(0, kv_heads=2)
    config = model.config
    config.initializer_range = 0.3
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval(), tok


@pytest.fixture(scope="session")
def peft_adapter():
    return _peft_adapter


def _peft_adapter(base, config, seed: int):
    """A PEFT model of `config` on a copy of `base` with random (non-identity) adapter weights, and its saved form."""
    from peft import get_peft_model, get_peft_model_state_dict

    torch.manual_seed(seed)
    model = get_peft_model(copy.deepcopy(base), config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.normal_(0, 0.5 if "lora" in name else 1.0)
    model.eval()
    return model, config.to_dict(), {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}


@pytest.fixture(autouse=True)
def adapter_registry(tmp_path, monkeypatch):
    """Every test gets its own empty `cp.adapters` folder."""
    folder = tmp_path / "adapters"
    monkeypatch.setenv("COMPOUND_ADAPTERS", str(folder))
    return folder


@pytest.fixture(scope="session")
def small():
    import compound as cp

    return cp.zoo.lm("small")


@pytest.fixture(scope="module")
def random_lm(random_base):
    """The module's random base model served by compound as a `dspy.LM` (an in-memory model, its own name)."""
    import compound as cp

    model, tok = random_base
    return cp.LM(model, tokenizer=tok, name=f"tune-random-{id(model)}", max_tokens=12, cache=False)


def chat(question: str, answer: str) -> dict:
    return {"messages": [{"role": "system", "content": "Answer."}, {"role": "user", "content": question},
                         {"role": "assistant", "content": answer}]}


@pytest.fixture(scope="session")
def chats():
    return chat_rows()


def chat_rows() -> list[dict]:
    """Chat data for tiny random models: reverse three words."""
    from compound.testing import reverse_chats

    return reverse_chats()
