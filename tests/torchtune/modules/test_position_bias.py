"""Positional blocks against independent implementations: partial RoPE, ALiBi, T5 bias, absolute embeddings."""

import math

import pytest
import torch
from torch import nn

from torchtune.modules import MultiHeadAttention
from torchtune.modules.input_embeddings import LearnedPositionalEmbedding, SinusoidalPositionalEmbedding
from torchtune.modules.position_bias import (
    ALiBiPositionBias,
    PartialRotaryPositionalEmbeddings,
    T5RelativePositionBias,
    alibi_slopes,
)


def test_alibi_slopes_for_8_and_12_heads():
    # The paper's slopes: 2^-1 .. 2^-8 for 8 heads; for 12, those and every other slope of 16 heads.
    eight = [2.0 ** -k for k in range(1, 9)]
    assert alibi_slopes(8) == pytest.approx(eight, rel=1e-12)
    assert alibi_slopes(12) == pytest.approx(eight + [2.0 ** -(k + 0.5) for k in range(4)], rel=1e-12)
    # The reference library (Bloom's ALiBi) multiplies the slopes by the key position.
    from transformers.models.bloom.modeling_bloom import build_alibi_tensor

    for n in (8, 12, 6):
        hf = build_alibi_tensor(torch.ones(1, 2), n, torch.float32)[:, 0, 1]
        torch.testing.assert_close(torch.tensor(alibi_slopes(n)), hf)


def test_alibi_bias_is_minus_slope_times_distance():
    bias = ALiBiPositionBias(4)(torch.arange(5)[None], torch.arange(5)[None])  # [1, 4, 5, 5]
    for h, slope in enumerate(alibi_slopes(4)):
        for i in range(5):
            for j in range(5):
                assert bias[0, h, i, j].item() == pytest.approx(-slope * abs(i - j))


def test_t5_buckets_equal_transformers():
    from transformers.models.t5.modeling_t5 import T5Attention

    rel = torch.arange(-300, 300)
    for bidirectional in (False, True):
        ours = T5RelativePositionBias(2, num_buckets=32, max_distance=128, bidirectional=bidirectional).bucket(rel)
        ref = T5Attention._relative_position_bucket(rel, bidirectional=bidirectional, num_buckets=32,
                                                    max_distance=128)
        assert torch.equal(ours, ref)


def test_partial_rope_keeps_the_unrotated_dims_and_rotates_the_rest():
    rope = PartialRotaryPositionalEmbeddings(16, fraction=0.25, max_seq_len=32)
    x = torch.randn(2, 7, 3, 16)
    out = rope(x)
    torch.testing.assert_close(out[..., 4:], x[..., 4:], atol=0, rtol=0)
    # Rotated part: pairs (2i, 2i+1) by pos * base^(-2i/4), written out.
    theta = 10_000 ** (-torch.arange(0, 4, 2, dtype=torch.float64) / 4)
    angle = torch.arange(7, dtype=torch.float64)[:, None] * theta  # [s, 2]
    cos, sin = angle.cos()[None, :, None], angle.sin()[None, :, None]
    x0, x1 = x.double()[..., 0:4:2], x.double()[..., 1:4:2]
    torch.testing.assert_close(out[..., 0:4:2].double(), x0 * cos - x1 * sin, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(out[..., 1:4:2].double(), x1 * cos + x0 * sin, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("fraction", [0.3, 0.0, 1.5])
def test_partial_rope_rejects_odd_or_empty_rotations(fraction):
    with pytest.raises(ValueError, match="partial RoPE fraction"):
        PartialRotaryPositionalEmbeddings(10, fraction=fraction)


def test_sinusoidal_and_learned_tables():
    sin = SinusoidalPositionalEmbedding(8, max_seq_len=16, scale=0.5)
    h = torch.zeros(1, 3, 8)
    pos = torch.tensor([[0, 5, 9]])
    out = sin(h, input_pos=pos)
    for j, p in enumerate([0, 5, 9]):
        expected = [math.sin(p / 10_000 ** (2 * i / 8)) for i in range(4)] + \
                   [math.cos(p / 10_000 ** (2 * i / 8)) for i in range(4)]
        torch.testing.assert_close(out[0, j], 0.5 * torch.tensor(expected), atol=1e-6, rtol=1e-6)
    learned = LearnedPositionalEmbedding(16, 8)
    torch.testing.assert_close(learned(h, input_pos=pos)[0], learned.embedding.weight[[0, 5, 9]])


def _explicit_biased_attention(q, k, v, bias, visible):
    """softmax(q k^T / sqrt(d) + bias) v over visible keys, per head, in fp64 (MHA, no GQA)."""
    scores = (q.double() @ k.double().transpose(-2, -1)) / math.sqrt(q.shape[-1]) + bias.double()
    scores = scores.masked_fill(~visible, float("-inf"))
    return torch.softmax(scores, -1) @ v.double()


def test_alibi_attention_in_packed_documents_uses_per_document_positions():
    torch.manual_seed(0)
    d, n_h = 16, 2
    lin = lambda: nn.Linear(d, d, bias=False)  # noqa: E731
    attn = MultiHeadAttention(embed_dim=d, num_heads=n_h, num_kv_heads=n_h, head_dim=8, q_proj=lin(), k_proj=lin(),
                              v_proj=lin(), output_proj=nn.Identity(), attn_bias=ALiBiPositionBias(n_h))
    x = torch.randn(1, 6, d)
    doc = torch.tensor([[0, 0, 0, 1, 1, 1]])
    pos = torch.tensor([[0, 1, 2, 0, 1, 2]])
    mask = (doc[:, :, None] == doc[:, None, :]) & torch.ones(6, 6, dtype=torch.bool).tril()
    out = attn(x, x, mask=mask, input_pos=pos)
    q, k, v = (p(x).view(1, 6, n_h, 8).transpose(1, 2) for p in (attn.q_proj, attn.k_proj, attn.v_proj))
    slopes = torch.tensor(alibi_slopes(n_h), dtype=torch.float64)[None, :, None, None]
    bias = -slopes * (pos[:, None, :, None] - pos[:, None, None, :]).abs()
    expected = _explicit_biased_attention(q, k, v, bias, mask[:, None]).transpose(1, 2).reshape(1, 6, d)
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=1e-5)
