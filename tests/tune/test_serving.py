"""Adapters served by the engine: greedy output of a batch mixing base, LoRA, prefix- and prompt-tuning requests
equals each adapter alone through PEFT, with LRU eviction, and versions never share cached K/V."""

import pytest
import torch
from peft import LoraConfig, PrefixTuningConfig, PromptTuningConfig

from compound.lm import Engine, EngineConfig, SamplingParams
from compound.lm.lora import from_peft, served_adapters, unhooked_copy

PROMPTS = ["hello world", "What is the capital of France?", "1 2 3", "the quick brown fox jumps over the lazy dog"]
N = 12
CONFIGS = {
    "all-r4": (LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False), 1),
    "qv-r8-rs": (LoraConfig(r=8, lora_alpha=4, target_modules=["q_proj", "v_proj"], use_rslora=True,
                            alpha_pattern={"v_proj": 16}), 2),
    "mlp-r2": (LoraConfig(r=2, lora_alpha=2, target_modules=["gate_proj", "down_proj"]), 3),
    "prefix": (PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=6), 4),
    "prompt": (PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5), 5),
}


def greedy(model, tok, prompt):
    """PEFT's own forward, the whole sequence every step (PEFT's generate drops prefix tuning's K/V on
    transformers 5: it passes `past_key_values`, which `generate`'s `cache=` overrides)."""
    ids = tok(prompt, return_tensors="pt")["input_ids"].to(next(model.parameters()).device)
    with torch.no_grad():
        for _ in range(N):
            ids = torch.cat([ids, model(input_ids=ids).logits[:, -1:].argmax(-1)], 1)
    return tok.decode(ids[0, -N:], skip_special_tokens=True)


@pytest.fixture(scope="module")
def adapters(random_base, peft_adapter):
    base, tok = random_base
    out = {}
    for name, (config, seed) in CONFIGS.items():
        model, cfg, tensors = peft_adapter(base, config, seed)
        out[name] = (cfg, tensors, {p: greedy(model, tok, p) for p in PROMPTS})
    out[None] = (None, None, {p: greedy(base, tok, p) for p in PROMPTS})
    return out


@pytest.fixture
def engine(random_base, adapters):
    base, tok = random_base
    served = served_adapters(base)
    for name, (cfg, tensors, _) in adapters.items():
        if name is not None:
            served.add(from_peft(name, cfg, tensors, base))
    engines = []

    def make(**config):
        engines.append(Engine(base, tok, EngineConfig(**{"max_batch_size": 8, "max_seq_len": 128, **config})))
        return engines[-1]

    yield make
    for e in engines:
        e.close()
    served.capacity = 8


def run_mixed(engine, tok, requests):
    seqs = [engine.submit(tok(p)["input_ids"], SamplingParams(max_tokens=N), adapter) for p, adapter in requests]
    return [s.future.result(timeout=120).text for s in seqs]


def test_the_adapters_really_change_the_output(adapters):
    """Otherwise equality below would prove nothing."""
    base_out = adapters[None][2]
    for name in CONFIGS:
        assert sum(adapters[name][2][p] != base_out[p] for p in PROMPTS) >= 3, name


@pytest.mark.parametrize("config", [{}, {"max_prefill_tokens": 8}, {"prefix_cache_tokens": 0}, {"max_batch_size": 3}])
def test_mixed_batch_equals_each_adapter_alone_through_peft(random_base, adapters, engine, config):
    _, tok = random_base
    requests = [(p, name) for p in PROMPTS for name in adapters] * 2  # the second round hits the prefix cache
    got = run_mixed(engine(**config), tok, requests)
    assert got == [adapters[name][2][p] for p, name in requests]


def test_lru_eviction_keeps_outputs_exact(random_base, adapters, engine):
    """Two LoRA slots for three adapters: sequences wait for a slot, evicted adapters come back bit-exact."""
    base, tok = random_base
    served_adapters(base).capacity = 2
    eng = engine(max_batch_size=4)
    requests = [(p, name) for name in ["all-r4", "qv-r8-rs", "mlp-r2", "all-r4", None, "mlp-r2"] for p in PROMPTS]
    assert run_mixed(eng, tok, requests) == [adapters[name][2][p] for p, name in requests]
    assert len(served_adapters(base).bank.resident) == 2


def test_a_retrained_adapter_gets_new_weights_and_no_stale_prefix_blocks(random_base, adapters, engine):
    base, tok = random_base
    eng = engine()
    served = served_adapters(base)
    cfg, tensors, expected = adapters["prefix"]
    old = served.get("prefix")
    assert run_mixed(eng, tok, [(p, "prefix") for p in PROMPTS]) == [expected[p] for p in PROMPTS]
    cfg2, tensors2, expected2 = adapters["prompt"]  # other weights under the same name
    served.add(from_peft("prefix", cfg2, tensors2, base))
    try:
        assert served.get("prefix").fingerprint != old.fingerprint
        assert run_mixed(eng, tok, [(p, "prefix") for p in PROMPTS]) == [expected2[p] for p in PROMPTS]
    finally:
        served.add(old)


def test_unknown_adapter_is_refused(random_base, engine):
    _, tok = random_base
    with pytest.raises(ValueError, match="adapter 'nope' is not loaded"):
        engine().submit(tok("hi")["input_ids"], SamplingParams(max_tokens=2), "nope")


def test_lora_on_another_base_is_refused_naming_the_layer(random_base, adapters):
    from compound.testing import tiny_llama

    other, _ = tiny_llama(1, hidden=32)
    cfg, tensors, _ = adapters["all-r4"]
    with pytest.raises(ValueError, match="trained on another base model"):
        from_peft("all-r4", cfg, tensors, other)


def test_unhooked_copy_shares_weights_without_the_serving_hooks(random_base, adapters, engine):
    base, tok = random_base
    run_mixed(engine(), tok, [(PROMPTS[0], "all-r4")])  # installs the hooks
    assert served_adapters(base).bank.hooks
    clone = unhooked_copy(base)
    assert all(a is b for a, b in zip(base.parameters(), clone.parameters()))
    assert not any(m._forward_hooks for m in clone.modules())
    assert greedy(clone, tok, PROMPTS[1]) == adapters[None][2][PROMPTS[1]]


def test_other_threads_using_the_model_see_the_base_model(random_base, adapters, engine):
    """After the engine served an adapter, calling the model object directly gives the base model's output."""
    base, tok = random_base
    assert run_mixed(engine(), tok, [(PROMPTS[0], "all-r4")]) == [adapters["all-r4"][2][PROMPTS[0]]]
    assert greedy(base, tok, PROMPTS[0]) == adapters[None][2][PROMPTS[0]]


@pytest.mark.gpu
def test_mixed_batch_in_captured_cuda_graphs_equals_peft(random_base, peft_adapter):
    """Decode steps replay CUDA graphs captured once; the per-row slot mask is written before every replay."""
    import copy

    base, tok = random_base
    model = copy.deepcopy(base).cuda()
    served = served_adapters(model)
    expected = {None: {}}
    for name in ("all-r4", "qv-r8-rs", "prefix"):
        config, seed = CONFIGS[name]
        peft_model, cfg, tensors = peft_adapter(model, config, seed)
        served.add(from_peft(name, cfg, tensors, model))
        expected[name] = {p: greedy(peft_model, tok, p) for p in PROMPTS}
    expected[None] = {p: greedy(model, tok, p) for p in PROMPTS}

    engine = Engine(model, tok, EngineConfig(max_batch_size=8, max_seq_len=128, cuda_graphs=True))
    try:
        requests = [(p, name) for p in PROMPTS for name in expected] * 2
        assert run_mixed(engine, tok, requests) == [expected[name][p] for p, name in requests]
        assert engine.runner.graphs is not None and engine.runner.graphs.enabled and engine.runner.graphs.graphs
    finally:
        engine.close()
