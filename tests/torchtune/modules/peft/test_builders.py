import torch
from torch import nn

from torchtune.modules import RotaryPositionalEmbeddings
from torchtune.modules.low_precision import FrozenNF4Linear, is_nf4
from torchtune.modules.peft import (
    DoRALinear,
    LoRALinear,
    build_mlp,
    build_self_attention,
    dense_linear,
    lora_linear_builder,
)


def test_lora_linear_builder_picks_the_layer_kind_by_name():
    linear = lora_linear_builder(["q_proj", "output"], lora_rank=2, lora_alpha=4.0, lora_dropout=0.1)
    q = linear("q_proj", 64, 128, True)
    assert type(q) is LoRALinear and (q.in_dim, q.out_dim, q.rank, q.alpha) == (64, 128, 2, 4.0)
    assert q.bias is not None and isinstance(q.dropout, nn.Dropout) and q.dropout.p == 0.1
    assert type(linear("k_proj", 64, 64, False)) is nn.Linear
    assert type(lora_linear_builder(["w1"], lora_rank=2, lora_alpha=4.0, use_dora=True)("w1", 64, 64, False)) is DoRALinear


def test_quantize_base_quantizes_every_layer_except_keep_dense():
    linear = lora_linear_builder(["q_proj", "output"], lora_rank=2, lora_alpha=4.0, quantize_base=True)
    q, k, out = linear("q_proj", 64, 64, False), linear("k_proj", 64, 64, False), linear("output", 64, 256, False)
    assert type(q) is LoRALinear and is_nf4(q.weight)
    assert type(k) is FrozenNF4Linear
    assert type(out) is LoRALinear and not is_nf4(out.weight)
    plain_out = lora_linear_builder(["q_proj"], lora_rank=2, lora_alpha=4.0, quantize_base=True)("output", 64, 256, False)
    assert type(plain_out) is nn.Linear


def test_build_self_attention_shapes_biases_and_forward():
    attn = build_self_attention(
        lora_linear_builder(["v_proj"], lora_rank=2, lora_alpha=4.0),
        embed_dim=64, num_heads=4, num_kv_heads=2, head_dim=16,
        pos_embeddings=RotaryPositionalEmbeddings(16, max_seq_len=32), max_seq_len=32, qkv_bias=True,
    )
    assert attn.q_proj.weight.shape == (64, 64) and attn.k_proj.weight.shape == (32, 64)
    assert type(attn.v_proj) is LoRALinear and attn.v_proj.out_dim == 32
    assert attn.q_proj.bias is not None and attn.output_proj.bias is None
    x = torch.randn(2, 8, 64)
    assert attn(x, x).shape == (2, 8, 64)


def test_build_mlp_gated_and_plain():
    gated = build_mlp(dense_linear, dim=64, hidden_dim=96)
    assert gated.w1.weight.shape == (96, 64) and gated.w2.weight.shape == (64, 96) and gated.w3 is not None
    assert isinstance(gated.activation, nn.SiLU)
    x = torch.randn(3, 64)
    expected = gated.w2(torch.nn.functional.silu(gated.w1(x)) * gated.w3(x))
    torch.testing.assert_close(gated(x), expected)
    plain = build_mlp(dense_linear, dim=64, hidden_dim=96, gated=False, bias=True, activation=nn.GELU())
    assert plain.w3 is None and plain.w1.bias is not None
    torch.testing.assert_close(plain(x), plain.w2(torch.nn.functional.gelu(plain.w1(x))))
