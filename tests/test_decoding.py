"""The in-place KV cache and the grouped attention give transformers' own numbers, step after step.

A tiny Gemma 3 (sliding-window layers beside full ones, one key/value head for four query heads, like the
packaged model) decodes a padded batch with transformers' ``DynamicCache`` and default attention, and again
with :func:`stockllm.llm.decoding.in_place_decoding`: the logits agree at every step, past the sliding window
and past the cache's first allocation.
"""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache, Gemma3ForCausalLM, Gemma3TextConfig
from transformers.integrations.sdpa_attention import repeat_kv

from stockllm.llm.decoding import ATTENTION, MIN_ROOM, grouped_attention, in_place_decoding


def reference_attention(query, key, value, mask, scaling):
    """Plain attention with repeated key/value heads (what eager attention computes)."""
    groups = query.shape[1] // key.shape[1]
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    scores = query @ key.transpose(-1, -2) * scaling + mask[:, :, :, : key.shape[-2]]
    return (torch.softmax(scores, dim=-1) @ value).transpose(1, 2)


@pytest.mark.parametrize("length", [1, 7])
def test_grouped_attention_equals_attention_with_repeated_key_value_heads(length):
    torch.manual_seed(0)
    query, key, value = torch.randn(3, 4, length, 16), torch.randn(3, 2, 20, 16), torch.randn(3, 2, 20, 16)
    mask = torch.zeros(3, 1, length, 24)
    mask[1, :, :, :5] = torch.finfo(torch.float32).min  # a left-padded row
    out, _ = grouped_attention(None, query, key, value, mask, scaling=0.25)
    assert out.shape == (3, length, 4, 16)
    torch.testing.assert_close(out, reference_attention(query, key, value, mask, 0.25), rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def tiny_gemma():
    torch.manual_seed(0)
    config = Gemma3TextConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                              num_attention_heads=4, num_key_value_heads=1, head_dim=8, sliding_window=6,
                              layer_types=["sliding_attention", "sliding_attention", "sliding_attention", "full_attention"],
                              max_position_embeddings=512, pad_token_id=0)
    return Gemma3ForCausalLM(config).eval()


def decode(model, ids, mask, steps, cache, tokens):
    """Prefill then ``steps`` single-token steps feeding ``tokens``; the last-position logits of each step."""
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    seen = []
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True)
        seen.append(out.logits[:, -1])
        for step in range(steps):
            mask = torch.cat([mask, mask.new_ones((len(ids), 1))], dim=1)
            positions = positions[:, -1:] + 1
            out = model(input_ids=tokens[:, step:step + 1], attention_mask=mask, position_ids=positions,
                        past_key_values=cache, use_cache=True)
            seen.append(out.logits[:, -1])
    return torch.stack(seen)


def test_in_place_decoding_gives_the_logits_of_transformers_cache_and_attention(tiny_gemma):
    torch.manual_seed(1)
    ids = torch.randint(1, 64, (3, 9))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0  # left padding, as the generator pads
    mask[2, :1] = 0
    steps = MIN_ROOM + 30  # past the sliding window and past the first allocation
    tokens = torch.randint(1, 64, (3, steps))
    expected = decode(tiny_gemma, ids, mask, steps, DynamicCache(config=tiny_gemma.config), tokens)
    with in_place_decoding(tiny_gemma) as cache:
        got = decode(tiny_gemma, ids, mask, steps, cache, tokens)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    window = tiny_gemma.config.sliding_window
    sliding = [layer for layer in cache.layers if layer.is_sliding]
    assert sliding and all(layer.room.size == window + MIN_ROOM for layer in sliding)  # a window, not the whole past


def test_the_model_gets_its_own_attention_back_after_the_block(tiny_gemma):
    before = tiny_gemma.config._attn_implementation
    with in_place_decoding(tiny_gemma):
        assert tiny_gemma.config._attn_implementation == ATTENTION
    assert tiny_gemma.config._attn_implementation == before
