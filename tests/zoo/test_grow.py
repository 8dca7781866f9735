"""grow_llama: a wider and deeper Llama that computes exactly what the small one did, and whose new weights learn."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from compound.zoo.grow import grow_llama


def small_llama(**overrides):
    torch.manual_seed(0)
    config = dict(vocab_size=50, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=4, max_position_embeddings=64)
    return LlamaForCausalLM(LlamaConfig(**{**config, **overrides})).eval()


@pytest.mark.parametrize("tied", [True, False])
def test_grown_model_gives_the_same_logits(tied):
    base = small_llama(tie_word_embeddings=tied)
    with torch.no_grad():  # random init has unit norms; make them non-trivial so the rescaling is really tested
        for name, p in base.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    grown = grow_llama(base, hidden_size=56, num_attention_heads=7, intermediate_size=96, num_hidden_layers=3).eval()
    assert (grown.config.hidden_size, grown.config.num_hidden_layers, grown.config.head_dim) == (56, 3, 8)
    ids = torch.randint(0, 50, (3, 11))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0
    with torch.no_grad():
        want = base(input_ids=ids, attention_mask=mask).logits
        got = grown(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert sum(p.numel() for p in grown.parameters()) > 2 * sum(p.numel() for p in base.parameters())


def test_new_weights_receive_gradient_and_training_changes_the_output():
    base = small_llama()
    grown = grow_llama(base, hidden_size=48, num_attention_heads=6, intermediate_size=64, num_hidden_layers=2)
    ids = torch.randint(0, 50, (4, 9))
    grown.train()
    loss = grown(input_ids=ids, labels=ids).loss
    loss.backward()
    attn = grown.model.layers[0].self_attn
    # the zero-initialised writes of the new heads and new dimensions are not stuck at zero
    assert attn.o_proj.weight.grad[:, 32:].abs().sum() > 0
    assert attn.o_proj.weight.grad[32:, :].abs().sum() > 0
    assert grown.model.layers[0].mlp.down_proj.weight.grad[:, 48:].abs().sum() > 0


def test_grow_refuses_what_it_cannot_preserve():
    base = small_llama()
    with pytest.raises(ValueError, match="only grows"):
        grow_llama(base, hidden_size=24, num_attention_heads=3, intermediate_size=48, num_hidden_layers=2)
    with pytest.raises(ValueError, match="head size"):
        grow_llama(base, hidden_size=40, num_attention_heads=4, intermediate_size=48, num_hidden_layers=2)
    with pytest.raises(ValueError, match="multi-head"):
        grow_llama(small_llama(num_key_value_heads=2), hidden_size=48, num_attention_heads=6, intermediate_size=48,
                   num_hidden_layers=2)
