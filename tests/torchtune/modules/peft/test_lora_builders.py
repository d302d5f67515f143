from torch import nn

import pytest

from torchtune.modules.low_precision import FrozenNF4Linear, is_nf4
from torchtune.modules.peft import DoRALinear, LoRALinear, get_lora_linear_builder, lora_linear_builder


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


def test_get_lora_linear_builder_adapts_the_named_targets_only():
    linear = get_lora_linear_builder(["q_proj"], apply_lora_to_mlp=True, lora_rank=2, lora_alpha=4.0)
    assert type(linear("q_proj", 64, 64, False)) is LoRALinear and type(linear("w2", 96, 64, False)) is LoRALinear
    assert type(linear("v_proj", 64, 64, False)) is nn.Linear and type(linear("output", 64, 256, False)) is nn.Linear
    assert linear.adapted_names == {"q_proj", "w1", "w2", "w3"}
    with pytest.raises(ValueError):
        get_lora_linear_builder(["x_proj"], lora_rank=2, lora_alpha=4.0)

