"""Layers of the block library against their formulas: cross-attention (and its cache), post-norm and
parallel residuals, feed-forward choices."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torchtune.models._decoder import _ffn
from torchtune.modules import (
    MultiHeadAttention,
    ParallelTransformerLayer,
    RMSNorm,
    TransformerBlockLayer,
    TransformerCrossAttentionLayer,
    dense_linear,
)


def _attn(is_causal=True, n_kv=2):
    lin = lambda o: nn.Linear(32, o, bias=False)  # noqa: E731
    return MultiHeadAttention(embed_dim=32, num_heads=4, num_kv_heads=n_kv, head_dim=8, q_proj=lin(32),
                              k_proj=lin(8 * n_kv), v_proj=lin(8 * n_kv), output_proj=lin(32), is_causal=is_causal)


def _explicit_cross(attn, x, enc, visible):
    """out_proj(softmax(q k^T / sqrt(h_d) masked) v) with kv heads shared by their query groups, fp64."""
    b, s, _ = x.shape
    q = attn.q_proj(x).view(b, s, 4, 8).transpose(1, 2).double()
    k = attn.k_proj(enc).view(b, -1, 2, 8).transpose(1, 2).repeat_interleave(2, 1).double()
    v = attn.v_proj(enc).view(b, -1, 2, 8).transpose(1, 2).repeat_interleave(2, 1).double()
    scores = (q @ k.transpose(-2, -1) / math.sqrt(8)).masked_fill(~visible[:, None], float("-inf"))
    probs = torch.softmax(scores, -1).nan_to_num(0.0)
    return attn.output_proj((probs @ v).transpose(1, 2).reshape(b, s, 32).float())


def test_cross_attention_layer_formula_skip_and_cache():
    torch.manual_seed(0)
    mlp = _ffn("swiglu", dense_linear, 32, 64, False)
    layer = TransformerCrossAttentionLayer(_attn(is_causal=False), mlp, ca_norm=RMSNorm(32), mlp_norm=RMSNorm(32)).eval()
    x, enc = torch.randn(2, 6, 32), torch.randn(2, 5, 32)
    visible = torch.ones(2, 6, 5, dtype=torch.bool)
    visible[0, :, 3:] = False  # sample 0's encoder output is padded after 3 positions
    visible[1, 2] = False  # a query row that sees nothing
    with torch.no_grad():
        out = layer(x, encoder_input=enc, encoder_mask=visible)
        h = x + _explicit_cross(layer.attn, layer.ca_norm(x), enc, visible)
        torch.testing.assert_close(out, h + mlp(layer.mlp_norm(h)), atol=1e-5, rtol=1e-5)
        assert torch.equal(layer(x), x)  # no encoder input, nothing cached: skipped

        # Decoding: the encoder's keys/values are cached on the first call and reused afterwards.
        layer.setup_caches(2, torch.float32, encoder_max_seq_len=8, decoder_max_seq_len=16)
        steps = [layer(x[:, :2], encoder_input=enc, encoder_mask=visible[:, :2])]
        steps += [layer(x[:, i:i + 1], encoder_mask=visible[:, i:i + 1]) for i in range(2, 6)]
        assert layer.attn.kv_cache.size == 5
        torch.testing.assert_close(torch.cat(steps, 1), out, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="is_causal=False"):
        TransformerCrossAttentionLayer(_attn(is_causal=True), mlp)


def test_post_norm_and_parallel_residual_layers_equal_their_formulas():
    torch.manual_seed(0)
    attn, mlp = _attn(), _ffn("gelu", dense_linear, 32, 64, True)
    n1, n2 = nn.LayerNorm(32), nn.LayerNorm(32)
    x = torch.randn(2, 7, 32)
    causal = torch.ones(7, 7, dtype=torch.bool).tril()[None].expand(2, -1, -1)
    with torch.no_grad():
        a = _explicit_cross(attn, x, x, causal)  # self-attention is cross-attention to itself, causally
        post = TransformerBlockLayer(attn, mlp, sa_residual_norm=n1, mlp_residual_norm=n2)
        h = n1(x + a)
        torch.testing.assert_close(post(x), n2(h + mlp(h)), atol=1e-5, rtol=1e-5)
        parallel = ParallelTransformerLayer(attn, mlp, sa_norm=nn.Identity(), mlp_norm=n2)
        torch.testing.assert_close(parallel(x), x + a + mlp(n2(x)), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("choice", ["swiglu", "geglu", "gelu", "relu", "relu2"])
@pytest.mark.parametrize("bias", [False, True])
def test_ffn_choices(choice, bias):
    torch.manual_seed(0)
    ffn = _ffn(choice, dense_linear, 16, 24, bias)
    x = torch.randn(3, 16)
    w1, w2 = ffn.w1, ffn.w2
    act = {"swiglu": F.silu, "geglu": lambda t: F.gelu(t, approximate="tanh"), "gelu": F.gelu, "relu": F.relu,
           "relu2": lambda t: F.relu(t) ** 2}[choice]
    gated = choice in ("swiglu", "geglu")
    assert (ffn.w3 is not None) == gated and (w1.bias is not None) == bias
    h = act(w1(x)) * ffn.w3(x) if gated else act(w1(x))
    torch.testing.assert_close(ffn(x), w2(h))
