import torch
from torch import nn

from torchtune.modules import RotaryPositionalEmbeddings, build_mlp, build_self_attention, dense_linear
from torchtune.modules.peft import LoRALinear, lora_linear_builder


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
