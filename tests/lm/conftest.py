import pytest
import torch
from transformers import LlamaForCausalLM

from compound.lm import Engine, EngineConfig
from compound.testing import capitals_llama, tiny_llama


@pytest.fixture(scope="session")
def varied():
    """A random tiny Llama with a large init, so greedy outputs are varied text (not one repeated token)."""
    model, tok = tiny_llama(0)
    config = model.config
    config.initializer_range = 0.3
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval(), tok


@pytest.fixture(scope="session")
def capitals():
    """A tiny Llama trained to answer capital questions in DSPy's ChatAdapter format."""
    return capitals_llama()


@pytest.fixture
def make_engine(varied):
    engines = []

    def make(start=True, **config):
        model, tok = varied
        engine = Engine(model, tok, EngineConfig(**{"max_batch_size": 8, "max_seq_len": 256, **config}), start=start)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()
