"""Phi-3 builders: the published size, LoRA / QLoRA wiring (cheaply) and the rotate-half RoPE."""

import pytest
import torch

import torchtune.models.phi3._model_builders as builders
from torchtune.models.phi3 import Phi3RotaryPositionalEmbeddings, lora_phi3, lora_phi3_mini, phi3_mini, qlora_phi3_mini
from torchtune.modules.peft import LoRALinear

# microsoft/Phi-3-mini-4k-instruct/config.json (hidden 3072, intermediate 8192, 32 layers, 32 heads and 32 kv heads,
# vocab 32064, untied lm_head): embeddings and lm_head 2 * 32064 * 3072, per layer qkv 9216 * 3072 + o 3072^2 +
# gate_up 16384 * 3072 + down 3072 * 8192 + two norms, final norm: 3,821,079,552 (the model card's "3.8B").
# Computed here from those config.json dimensions, independently of our builder.
PHI3_MINI = 3_821_079_552


def test_published_parameter_count():
    with torch.device("meta"):
        dense = phi3_mini()
        adapted = lora_phi3_mini(["q_proj", "v_proj", "output_proj"], apply_lora_to_mlp=True)
    count = sum(p.numel() for p in dense.parameters())
    assert abs(count - PHI3_MINI) / PHI3_MINI < 1e-3, count
    assert sum(p.numel() for n, p in adapted.named_parameters() if "lora_" not in n) == count
    assert dense.layers[0].attn.num_kv_heads == 32 and dense.layers[0].attn.pos_embeddings.base == 10_000
    assert isinstance(dense.layers[0].attn.pos_embeddings, Phi3RotaryPositionalEmbeddings)


def test_qlora_forwards_quantize_base(monkeypatch):
    calls = []
    monkeypatch.setattr(builders, "lora_phi3_mini", lambda *a: calls.append(a))
    qlora_phi3_mini(["q_proj"], True, False, 4, 8.0, 0.0, False)
    assert calls == [(["q_proj"], True, False, 4, 8.0, 0.0, False, True)]  # quantize_base=True


def test_tiny_qlora_quantizes_the_adapted_base_weights():
    from torchao.quantization.quantize_.workflows.nf4.nf4_tensor import NF4Tensor

    model = lora_phi3(["q_proj", "v_proj"], apply_lora_to_mlp=True, vocab_size=64, num_layers=1, num_heads=2,
                      num_kv_heads=2, embed_dim=64, intermediate_dim=128, max_seq_len=32, lora_rank=4,
                      lora_alpha=8, quantize_base=True)
    assert isinstance(model.layers[0].attn.q_proj, LoRALinear)
    assert isinstance(model.layers[0].attn.q_proj.weight, NF4Tensor)
    assert isinstance(model.layers[0].mlp.w1.weight, NF4Tensor)
    assert model(torch.randint(0, 64, (1, 8))).shape == (1, 8, 64)


def test_rope_rotates_channel_i_with_channel_i_plus_half():
    rope = Phi3RotaryPositionalEmbeddings(dim=8, max_seq_len=16, base=100)
    x = torch.randn(2, 5, 3, 8, generator=torch.Generator().manual_seed(0))
    # Independent reference: rotate (x[i], x[i + 4]) by pos * base**(-2i / dim).
    pos = torch.arange(5.0)[:, None]
    angle = pos * 100.0 ** (-torch.arange(0, 8, 2).float() / 8)  # [s, 4]
    cos, sin = angle.cos()[None, :, None], angle.sin()[None, :, None]
    a, b = x[..., :4], x[..., 4:]
    expected = torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1)
    torch.testing.assert_close(rope(x), expected)
    # Explicit positions (as while decoding) pick the same rows of the cache.
    torch.testing.assert_close(rope(x[:, 2:], torch.arange(2, 5).expand(2, 3)), expected[:, 2:])
    with pytest.raises(ValueError, match="max_seq_len"):
        rope(torch.zeros(1, 17, 1, 8))
