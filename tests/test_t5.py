"""Our T5 stack equals transformers' T5 on the same weights; incremental decoding equals the full pass."""
from __future__ import annotations

import pytest
import torch

from mmfeat.recommenders.generative.t5 import T5Stack, relative_position_bucket

transformers = pytest.importorskip("transformers")
from transformers.models.t5.modeling_t5 import T5Config, T5Stack as HFStack  # noqa: E402

D, HEADS, HS, INNER, LAYERS = 16, 2, 12, 24, 2


def _hf(decoder: bool) -> HFStack:
    cfg = T5Config(vocab_size=8, d_model=D, d_kv=HS, d_ff=INNER, num_layers=LAYERS, num_decoder_layers=LAYERS,
                   num_heads=HEADS, dropout_rate=0.0, feed_forward_proj="relu", is_decoder=decoder,
                   use_cache=False, is_encoder_decoder=False)
    torch.manual_seed(0)
    stack = HFStack(cfg).eval()
    with torch.no_grad():  # random, non-trivial norms and biases
        for p in stack.parameters():
            p.normal_(0, 0.3)
    return stack


def _copy(hf: HFStack, ours: T5Stack) -> None:
    """transformers' weights into ours, by their state_dict names (the loader a reference checkpoint uses)."""
    ours.load_transformers_state(hf.state_dict())


def test_relative_buckets_match_transformers():
    from transformers.models.t5.modeling_t5 import T5Attention

    rel = torch.arange(-300, 301)
    for bidirectional in (True, False):
        expect = T5Attention._relative_position_bucket(rel, bidirectional=bidirectional, num_buckets=32,
                                                       max_distance=128)
        assert torch.equal(relative_position_bucket(rel, bidirectional), expect)


def test_encoder_equals_transformers_t5():
    hf = _hf(decoder=False)
    ours = T5Stack(D, HEADS, HS, INNER, LAYERS, 0.0, cross=False).eval()
    _copy(hf, ours)
    x = torch.randn(3, 9, D)
    keep = torch.ones(3, 9, dtype=torch.long)
    keep[1, 6:] = 0
    keep[2, 2:] = 0
    with torch.no_grad():
        expect = hf(inputs_embeds=x, attention_mask=keep).last_hidden_state
        got = ours(x, pad=keep == 0)
    real = keep.bool()
    assert torch.allclose(got[real], expect[real], atol=1e-5)


def test_decoder_equals_transformers_t5_and_its_steps_equal_the_full_pass():
    hf = _hf(decoder=True)
    ours = T5Stack(D, HEADS, HS, INNER, LAYERS, 0.0, cross=True).eval()
    _copy(hf, ours)
    users, width, steps = 2, 3, 4
    memory = torch.randn(users, 7, D)
    memory_pad = torch.zeros(users, 7, dtype=torch.bool)
    memory_pad[0, 5:] = True
    y = torch.randn(users * width, steps, D)
    mem_rows, pad_rows = memory.repeat_interleave(width, 0), memory_pad.repeat_interleave(width, 0)
    with torch.no_grad():
        expect = hf(inputs_embeds=y, encoder_hidden_states=mem_rows,
                    encoder_attention_mask=(~pad_rows).long()).last_hidden_state
        full = ours(y, memory=mem_rows, memory_pad=pad_rows)
        assert torch.allclose(full, expect, atol=1e-5)
        kv, cache = ours.memory_kv(memory), None
        for t in range(steps):
            state, cache = ours.step(y[:, t], t, cache, kv, memory_pad)
            assert torch.allclose(state, full[:, t], atol=1e-5), t



def test_incremental_decoding_refuses_training_mode():
    dec = T5Stack(D, HEADS, HS, INNER, 1, 0.1, cross=True).train()
    memory = torch.randn(1, 3, D)
    with pytest.raises(RuntimeError, match="eval mode"):
        dec.step(torch.randn(1, D), 0, None, dec.memory_kv(memory), torch.zeros(1, 3, dtype=torch.bool))
