"""build_decoder and the blocks it wires, each against a plain implementation written here."""

import math

import pytest
import torch
from torch import nn

from torchtune.modules import MultiHeadAttention, RMSNorm, ScaledEmbedding, build_decoder, dense_linear

DIMS = dict(vocab_size=64, num_layers=3, num_heads=4, num_kv_heads=2, embed_dim=32, intermediate_dim=48,
            max_seq_len=32)


def _attention_reference(attn: MultiHeadAttention, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(h_d) + mask) v with an explicit [s, s] boolean mask, no RoPE."""
    b, s, _ = x.shape
    q = attn.q_proj(x).view(b, s, attn.num_heads, attn.head_dim).transpose(1, 2)
    k = attn.k_proj(x).view(b, s, attn.num_kv_heads, attn.head_dim).transpose(1, 2)
    v = attn.v_proj(x).view(b, s, attn.num_kv_heads, attn.head_dim).transpose(1, 2)
    group = attn.num_heads // attn.num_kv_heads
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(attn.head_dim)
    scores = scores.masked_fill(~allowed, float("-inf"))
    out = torch.softmax(scores, dim=-1) @ v
    return attn.output_proj(out.transpose(1, 2).reshape(b, s, -1))


def _plain_attention(window=None, **kwargs):
    torch.manual_seed(0)
    lin = nn.Linear
    return MultiHeadAttention(embed_dim=32, num_heads=4, num_kv_heads=2, head_dim=8, q_proj=lin(32, 32, bias=False),
                              k_proj=lin(32, 16, bias=False), v_proj=lin(32, 16, bias=False),
                              output_proj=lin(32, 32, bias=False), sliding_window=window, **kwargs)


def test_sliding_window_attends_to_nothing_outside_the_window():
    attn = _plain_attention(window=3)
    x = torch.randn(2, 10, 32)
    i = torch.arange(10)
    allowed = (i[:, None] >= i[None, :]) & (i[:, None] - i[None, :] < 3)
    torch.testing.assert_close(attn(x), _attention_reference(attn, x, allowed))
    # Changing a token outside every later query's window leaves those outputs alone.
    y = x.clone()
    y[:, 0] += 5.0
    torch.testing.assert_close(attn(y)[:, 3:], attn(x)[:, 3:])
    assert not torch.allclose(attn(y)[:, :3], attn(x)[:, :3])


def test_sliding_window_restricts_a_given_packed_mask():
    attn = _plain_attention(window=2)
    x = torch.randn(1, 6, 32)
    i = torch.arange(6)
    doc = torch.tensor([0, 0, 0, 1, 1, 1])
    packed = (doc[:, None] == doc[None, :]) & (i[:, None] >= i[None, :])
    expected = _attention_reference(attn, x, packed & (i[:, None] - i[None, :] < 2))
    torch.testing.assert_close(attn(x, mask=packed[None]), expected)


def test_sliding_window_must_be_positive():
    with pytest.raises(ValueError, match="sliding_window"):
        _plain_attention(window=0)


def test_scaled_embedding_stores_the_plain_table():
    emb = ScaledEmbedding(10, 4, scale=2.0)
    tokens = torch.tensor([[1, 3]])
    torch.testing.assert_close(emb(tokens), emb.weight[tokens] * 2.0)
    model = build_decoder(**DIMS, embed_scale=8.0, tie_word_embeddings=True)
    assert isinstance(model.tok_embeddings, ScaledEmbedding) and model.output.weight is model.tok_embeddings.weight
    assert "output.weight" not in model.state_dict()


def test_qk_norm_is_applied_per_head_before_rope():
    model = build_decoder(**DIMS, qk_norm=True, head_dim=16, qkv_bias=True, attn_output_bias=True, mlp_bias=True)
    attn = model.layers[0].attn
    assert isinstance(attn.q_norm, RMSNorm) and attn.q_norm.scale.shape == (16,) and attn.head_dim == 16
    assert attn.q_proj.weight.shape == (64, 32) and attn.q_proj.bias is not None
    assert attn.output_proj.bias is not None and model.layers[0].mlp.w1.bias is not None
    with torch.no_grad():
        attn.q_norm.scale.copy_(torch.rand(16) + 0.5)
    x = torch.randn(1, 5, 32)
    q = attn.q_proj(x).view(1, 5, 4, 16)
    expected = attn.pos_embeddings(attn.q_norm(q))
    captured = {}
    handle = attn.pos_embeddings.register_forward_hook(lambda m, args, out: captured.setdefault("q", out))
    attn(x)
    handle.remove()
    torch.testing.assert_close(captured["q"], expected)


def test_per_layer_choices_and_their_length_check():
    model = build_decoder(**DIMS, sliding_window=[4, None, 4], pos_embeddings=[None, None, None])
    assert [layer.attn.sliding_window for layer in model.layers] == [4, None, 4]
    assert all(layer.attn.pos_embeddings is None for layer in model.layers)
    with pytest.raises(ValueError, match="one per layer"):
        build_decoder(**DIMS, sliding_window=[4, None])


def test_ungated_mlp_layer_norm_and_dims_errors():
    model = build_decoder(dense_linear, **DIMS, gated_mlp=False, mlp_activation=nn.GELU,
                          norm=lambda dim, eps: nn.LayerNorm(dim, eps=eps))
    assert model.layers[0].mlp.w3 is None and isinstance(model.layers[0].mlp.activation, nn.GELU)
    assert isinstance(model.norm, nn.LayerNorm) and model(torch.randint(0, 64, (1, 4))).shape == (1, 4, 64)
    with pytest.raises(ValueError, match="num_kv_heads"):
        build_decoder(**dict(DIMS, num_kv_heads=3))
    with pytest.raises(ValueError, match="divisible by num_heads"):
        build_decoder(**dict(DIMS, embed_dim=30))


def test_output_dim_gives_a_classification_head_on_the_same_body():
    torch.manual_seed(0)
    lm = build_decoder(**DIMS)
    torch.manual_seed(0)
    head = build_decoder(**DIMS, output_dim=3)
    assert head.output.weight.shape == (3, DIMS["embed_dim"])
    body = {k: v for k, v in lm.state_dict().items() if k != "output.weight"}
    missing, unexpected = head.load_state_dict(body, strict=False)
    assert missing == ["output.weight"] and not unexpected
    tokens = torch.randint(0, DIMS["vocab_size"], (2, 7))
    with torch.no_grad():
        hidden = lm.norm(lm.layers[2](lm.layers[1](lm.layers[0](lm.tok_embeddings(tokens)))))
        torch.testing.assert_close(head(tokens), hidden @ head.output.weight.T)  # [b, s, 3]
    assert build_decoder(**DIMS, output_dim=None).output.weight.shape == (DIMS["vocab_size"], DIMS["embed_dim"])
    with pytest.raises(ValueError, match="tied embeddings"):
        build_decoder(**DIMS, output_dim=3, tie_word_embeddings=True)


def test_window_recorded_by_a_checkpoint_is_checked_on_load(caplog):
    import logging

    from torchtune.modules.decoder_builder import CHECKPOINT_WINDOW_KEY

    model = build_decoder(**DIMS, sliding_window=4)
    logger = logging.getLogger("torchtune")
    logger.propagate = True  # let caplog see the package logger
    try:
        for declared, warns in [(4, False), (None, True), (8, True)]:
            sd = model.state_dict()  # an OrderedDict carrying torch's own _metadata
            sd._metadata[""] = dict(sd._metadata[""], **{CHECKPOINT_WINDOW_KEY: declared})
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="torchtune"):
                model.load_state_dict(sd)
            assert any("sliding_window" in r.getMessage() for r in caplog.records) == warns, declared
        caplog.clear()
        model.load_state_dict(dict(model.state_dict()))  # no metadata: nothing to compare
        assert not caplog.records
    finally:
        logger.propagate = False
