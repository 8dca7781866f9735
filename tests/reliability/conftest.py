"""The reliability suite: real tiny models, faults from the engine's own injection hook, figures printed at the end.

Every test records its figures with `figures.add(...)`; they are printed in a "compound reliability" section of the
terminal summary, so `make test` shows them (and the README quotes them).
"""

import threading

import pytest
import torch
from transformers import LlamaForCausalLM

from compound.lm import Engine, EngineConfig, SamplingParams
from compound.testing import tiny_llama

_FIGURES: list[str] = []


class Figures:
    def add(self, line: str) -> None:
        _FIGURES.append(line)
        print(line)


@pytest.fixture
def figures():
    return Figures()


def pytest_terminal_summary(terminalreporter):
    if _FIGURES:
        terminalreporter.section("compound reliability figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def model_and_tokenizer():
    """A random tiny Llama with a large init, so greedy outputs are varied text (not one token repeated)."""
    model, tok = tiny_llama(0)
    model.config.initializer_range = 0.3
    torch.manual_seed(0)
    return LlamaForCausalLM(model.config).eval(), tok


@pytest.fixture
def make_engine(model_and_tokenizer):
    engines = []

    def make(**config):
        model, tok = model_and_tokenizer
        engine = Engine(model, tok, EngineConfig(**{"max_batch_size": 16, "max_seq_len": 256, **config}))
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


PROMPTS = [f"{w} {i}" for i, w in enumerate(
    ["hello world", "What is the capital of France?", "the quick brown fox jumps over the lazy dog",
     "1 2 3 4 5", "Respond with the corresponding output fields", "yes no maybe", "Your input fields are:",
     "All interactions will be structured", "In adhering to this structure", "Paris. Berlin, Rome, Madrid",
     "the lazy dog", "quick quick quick", "( ) ' \" ? ! . , : ;", "answer question reasoning", "0 1 2 3 4 5 6 7 8 9",
     "completed fields marker", "Given the fields, produce the fields.", "What is the capital", "hello", "fox"])]


def solo_greedy(engine, tok, prompts, max_tokens) -> dict[str, list[int]]:
    """Each prompt alone through the engine (batch of one): the reference every batched run must equal."""
    return {p: engine.submit(tok(p)["input_ids"], SamplingParams(max_tokens=max_tokens)).future.result(60).output_ids
            for p in dict.fromkeys(prompts)}


def wait_idle(engine, timeout: float = 30.0) -> None:
    """Until the engine holds no request (its own bookkeeping), or fail after `timeout` seconds."""
    tick = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if not engine.scheduler.running and not engine.scheduler.waiting and not engine._live and engine._inbox.empty():
            return
        tick.wait(0.01)
    raise AssertionError(f"engine still holds requests after {timeout} s")


def assert_no_leaks(engine) -> dict:
    """0 slots held, 0 requests held, every K/V block free or cached with its parent: returns the counts."""
    wait_idle(engine)
    engine.prefix.check()
    s = engine.stats()
    assert s.requests_running == 0 and s.queue_depth == 0
    return {"slots_leaked": len(engine.scheduler.running), "requests_leaked": len(engine._live),
            "blocks_leaked": engine.prefix.num_blocks - len(engine.prefix._free) - len(engine.prefix)}
