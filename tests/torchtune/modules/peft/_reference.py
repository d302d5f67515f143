"""The reference implementation (Hugging Face peft) wrapped around a single linear layer."""

import torch
from torch import nn


def peft_linear(layer: nn.Module, use_dora: bool, use_bias: bool = False) -> nn.Module:
    """A peft LoRA/DoRA linear with the base weight, A, B (and magnitude) copied from ``layer``."""
    from peft import LoraConfig, inject_adapter_in_model

    base = nn.Sequential()
    base.add_module("lin", nn.Linear(layer.in_dim, layer.out_dim, bias=use_bias))
    config = LoraConfig(r=layer.rank, lora_alpha=layer.alpha, target_modules=["lin"], use_dora=use_dora)
    ref = inject_adapter_in_model(config, base)
    with torch.no_grad():
        ref.lin.base_layer.weight.copy_(layer.weight)
        if use_bias:
            ref.lin.base_layer.bias.copy_(layer.bias)
        ref.lin.lora_A["default"].weight.copy_(layer.lora_a.weight)
        ref.lin.lora_B["default"].weight.copy_(layer.lora_b.weight)
        if use_dora:
            ref.lin.lora_magnitude_vector["default"].weight.copy_(layer.magnitude)
    return ref.lin
