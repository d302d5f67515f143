"""Phi-4 builders: the published size and grouped-query shape, LoRA / QLoRA wiring (cheaply).

Its parity with transformers' Phi3ForCausalLM, GQA included, is in tests/torchtune/models/phi3/test_phi3_parity.py
(``PHI4`` shape: 8 query and 2 kv heads, RoPE base 250000, loaded with ``model_type: PHI4``).
"""

import torch

import torchtune.models.phi4._model_builders as builders
from torchtune.models.phi3 import Phi3RotaryPositionalEmbeddings
from torchtune.models.phi4 import lora_phi4_14b, phi4_14b, qlora_phi4_14b

# microsoft/phi-4/config.json (Phi3ForCausalLM: hidden 5120, intermediate 17920, 40 layers, 40 heads and 10 kv heads,
# head_dim 128, vocab 100352, untied lm_head): embeddings and lm_head 2 * 100352 * 5120, per layer qkv
# (5120 + 2 * 1280) * 5120 + o 5120^2 + gate_up 35840 * 5120 + down 5120 * 17920 + two norms, final norm:
# 14,659,507,200 (the model card's "14B"). Computed from those config.json dimensions, independently of our builder.
PHI4_14B = 14_659_507_200


def test_published_parameter_count_and_shape():
    with torch.device("meta"):
        dense = phi4_14b()
        adapted = lora_phi4_14b(["q_proj", "v_proj", "output_proj"], apply_lora_to_mlp=True)
    count = sum(p.numel() for p in dense.parameters())
    assert abs(count - PHI4_14B) / PHI4_14B < 1e-3, count
    assert sum(p.numel() for n, p in adapted.named_parameters() if "lora_" not in n) == count
    attn = dense.layers[0].attn
    assert (attn.num_heads, attn.num_kv_heads, attn.head_dim) == (40, 10, 128)
    assert isinstance(attn.pos_embeddings, Phi3RotaryPositionalEmbeddings) and attn.pos_embeddings.base == 250_000
    assert attn.pos_embeddings.max_seq_len == 16_384


def test_qlora_forwards_quantize_base(monkeypatch):
    calls = []
    monkeypatch.setattr(builders, "lora_phi4_14b", lambda *a: calls.append(a))
    qlora_phi4_14b(["q_proj", "k_proj"], False, True, 16, 32.0, 0.1, True)
    assert calls == [(["q_proj", "k_proj"], False, True, 16, 32.0, 0.1, True, True)]  # quantize_base=True
