"""The architecture guard: every family the engine admits equals HF `generate` token for token (tiny random-weight
configs built here, sliding windows shorter than the prompt); models it cannot reproduce are refused at load."""

import pytest
import torch
import transformers

from compound.lm import Engine, EngineConfig, SamplingParams, UnsupportedArchitectureError
from compound.lm.architecture import VERIFIED, attention_layout
from compound.testing import tiny_tokenizer

WINDOW = 8  # far shorter than the prompts below, so a missing window mask changes the output

# family -> (config class, the family's own settings); every family in VERIFIED has a row
FAMILIES = {
    "llama": ("LlamaConfig", {}),  # Llama 2/3, SmolLM2, the zoo
    "smollm2-shape": ("LlamaConfig", {"num_key_value_heads": 1, "tie_word_embeddings": True}),
    "mistral": ("MistralConfig", {"sliding_window": WINDOW}),
    "phi3": ("Phi3Config", {"sliding_window": WINDOW}),
    "gemma": ("GemmaConfig", {"head_dim": 16}),
    "qwen2": ("Qwen2Config", {"use_sliding_window": True, "sliding_window": WINDOW, "max_window_layers": 1}),
    "qwen3": ("Qwen3Config", {"head_dim": 16}),
    "gemma2": ("Gemma2Config", {"sliding_window": WINDOW, "head_dim": 16, "query_pre_attn_scalar": 16}),
    "gemma3_text": ("Gemma3TextConfig", {"sliding_window": WINDOW, "head_dim": 16, "query_pre_attn_scalar": 16,
                                         "sliding_window_pattern": 2}),
}


def build(family: str):
    tok = tiny_tokenizer()
    config_class, extra = FAMILIES[family]
    settings = dict(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, initializer_range=0.3,
    )
    config = getattr(transformers, config_class)(**{**settings, **extra})
    if family == "phi3":  # Phi-3 fuses its projections; keep the kv heads it can split evenly
        config.num_key_value_heads = 4
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(config).eval(), tok


def test_every_admitted_family_has_a_parity_row():
    assert set(VERIFIED) <= {getattr(transformers, c)().model_type for c, _ in FAMILIES.values()}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_greedy_tokens_and_logprobs_equal_hf_generate(family):
    """Batched, with chunked prefill and prefix reuse: the same tokens as HF generate, and the same log-probabilities
    (a missing window mask can leave the argmax alone but never the distribution)."""
    model, tok = build(family)
    if "sliding_window" in FAMILIES[family][1]:  # the window is really in play, and shorter than every prompt
        assert attention_layout(model.config).window == WINDOW
    prompts = ["the quick brown fox jumps over the lazy dog " * 3, "What is the capital of France? " * 2, "1 2 3"]
    engine = Engine(model, tok, EngineConfig(max_batch_size=4, max_seq_len=256, max_prefill_tokens=16))
    try:
        seqs = [engine.submit(tok(p)["input_ids"], SamplingParams(max_tokens=20, logprobs=0)) for p in prompts]
        results = [s.future.result(timeout=120) for s in seqs]
    finally:
        engine.close()
    for prompt, result in zip(prompts, results):
        inputs = tok(prompt, return_tensors="pt")["input_ids"]
        out = model.generate(inputs, max_new_tokens=20, do_sample=False, eos_token_id=None,
                             pad_token_id=tok.pad_token_id, output_logits=True, return_dict_in_generate=True)
        ref = out.sequences[0, inputs.shape[1]:].tolist()
        ref = ref[: ref.index(tok.eos_token_id)] if tok.eos_token_id in ref else ref  # the engine stops at EOS
        assert result.output_ids == ref, f"{family}: engine and HF generate differ on {prompt!r}"
        ref_lp = [torch.log_softmax(out.logits[t][0].float(), -1)[token].item() for t, token in enumerate(ref)]
        assert [c.logprob for c in result.logprobs] == pytest.approx(ref_lp, abs=2e-4)


@pytest.mark.parametrize("config_class, why", [
    ("MambaConfig", "linear_attention"),
    ("JambaConfig", "linear_attention"),
    ("Qwen3NextConfig", "linear_attention"),
    ("Llama4TextConfig", "chunked_attention"),
])
def test_hybrid_and_state_space_models_are_refused_with_the_reason(config_class, why):
    with pytest.raises(UnsupportedArchitectureError, match=f"{why}.*transformers directly"):
        attention_layout(getattr(transformers, config_class)(), trust_architecture=True)


def test_an_unverified_family_is_refused_unless_trusted():
    tok = tiny_tokenizer()
    config = transformers.Olmo2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with pytest.raises(UnsupportedArchitectureError, match="'olmo2' is not one of them.*trust_architecture=True"):
        Engine(model, tok, EngineConfig(max_batch_size=2, max_seq_len=64))
    engine = Engine(model, tok, EngineConfig(max_batch_size=2, max_seq_len=64, trust_architecture=True))
    try:
        ids = tok("hello world")["input_ids"]
        got = engine.submit(ids, SamplingParams(max_tokens=8)).future.result(timeout=60).output_ids
        ref = model.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False, eos_token_id=None,
                             pad_token_id=tok.pad_token_id)
        assert got == ref[0, len(ids):].tolist()
    finally:
        engine.close()
