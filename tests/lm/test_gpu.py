"""Checks that need CUDA (skipped elsewhere): graphed decode equals eager decode, auto dtype, OOM recovery."""

import pytest
import torch

from compound.lm import Engine, EngineConfig, EngineDeadError, SamplingParams, pick_dtype
from compound.testing import tiny_llama

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cuda_model():
    model, tok = tiny_llama(0, layers=4, hidden=128)
    model.config.initializer_range = 0.3
    torch.manual_seed(0)
    model = type(model)(model.config).to("cuda", torch.float32).eval()
    return model, tok


def test_auto_dtype_is_bf16_on_cuda():
    assert pick_dtype("auto", torch.device("cuda")) in {torch.bfloat16, torch.float16}


def test_cuda_graph_decode_equals_eager(cuda_model):
    model, tok = cuda_model
    prompts = [tok(f"hello world {i} " * (i + 1))["input_ids"] for i in range(11)]
    texts = {}
    for graphs in (False, True):
        engine = Engine(model, tok, EngineConfig(max_batch_size=16, max_seq_len=512, cuda_graphs=graphs))
        try:
            seqs = [engine.submit(p, SamplingParams(max_tokens=48)) for p in prompts]
            texts[graphs] = [s.future.result(timeout=120).text for s in seqs]
            if graphs:
                assert engine.runner.graphs.enabled and engine.runner.graphs.graphs
        finally:
            engine.close()
    assert texts[True] == texts[False]


def test_cuda_graph_decode_equals_eager_with_a_sliding_window():
    """Graph capture goes through the same per-layer masks: a window shorter than the prompt stays exact."""
    from test_architectures import build

    model, tok = build("gemma2")
    model = model.to("cuda", torch.float32)
    prompts = [tok(f"the quick brown fox {i} " * 4)["input_ids"] for i in range(6)]
    texts = {}
    for graphs in (False, True):
        engine = Engine(model, tok, EngineConfig(max_batch_size=8, max_seq_len=256, cuda_graphs=graphs))
        try:
            texts[graphs] = [s.future.result(timeout=120).output_ids
                             for s in [engine.submit(p, SamplingParams(max_tokens=24)) for p in prompts]]
        finally:
            engine.close()
    assert texts[True] == texts[False]


def test_a_dead_engine_gives_its_cuda_memory_back(cuda_model):
    model, tok = cuda_model
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    engine = Engine(model, tok, EngineConfig(max_batch_size=16, max_seq_len=1024))
    held = torch.cuda.memory_allocated() - base
    engine.faults.inject("decode")  # a broken model: the engine stops
    seqs = [engine.submit(tok("hello world")["input_ids"], SamplingParams(max_tokens=50)) for _ in range(4)]
    for seq in seqs:
        with pytest.raises(EngineDeadError):
            seq.future.result(timeout=60)
    torch.cuda.synchronize()
    assert held > 0 and torch.cuda.memory_allocated() - base < held / 10
