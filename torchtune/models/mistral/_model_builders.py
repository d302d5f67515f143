"""Mistral model builders: one plain function per published size and variant.

``_7B`` is Mistral 7B v0.1 (``mistralai/Mistral-7B-v0.1/config.json``): 32 layers, 32 query and
8 key/value heads, dim 4096, MLP 14336, vocabulary 32000, context 32768, RoPE base 10000 and a
4096-token sliding window. Later versions (v0.2, v0.3) have no window, RoPE base 1e6 and, for
v0.3, a 32768-token vocabulary: build those with :func:`~torchtune.models.mistral.mistral`.
"""

from typing import List

from torchtune.models.mistral._component_builders import (
    lora_mistral,
    lora_mistral_classifier,
    mistral,
    mistral_classifier,
)
from torchtune.modules import TransformerDecoder
from torchtune.modules.peft import LORA_ATTN_MODULES

_7B = dict(vocab_size=32_000, num_layers=32, num_heads=32, num_kv_heads=8, embed_dim=4096, intermediate_dim=14336,
           max_seq_len=32_768, attn_dropout=0.0, norm_eps=1e-5, rope_base=10_000, sliding_window=4096)


def mistral_7b() -> TransformerDecoder:
    """Mistral 7B v0.1: 32 layers, 32 query / 8 key-value heads, dim 4096, MLP 14336, window 4096."""
    return mistral(**_7B)


def lora_mistral_7b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """Mistral 7B with LoRA adapters; arguments as :func:`lora_mistral`, dimensions as :func:`mistral_7b`."""
    return lora_mistral(
        lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_7B, lora_rank=lora_rank,
        lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )


def qlora_mistral_7b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    *,
    quantize_base: bool = True,
) -> TransformerDecoder:
    """Mistral 7B with LoRA adapters on NF4 base weights (QLoRA); see :func:`lora_mistral_7b`."""
    return lora_mistral_7b(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, lora_rank, lora_alpha,
                           lora_dropout, use_dora, quantize_base)


def mistral_reward_7b() -> TransformerDecoder:
    """Mistral 7B as a reward model: :func:`mistral_7b` with a ``[4096] -> [1]`` head instead of the LM head."""
    return mistral_classifier(num_classes=1, **_7B)


def lora_mistral_reward_7b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """:func:`mistral_reward_7b` with LoRA adapters; arguments as :func:`lora_mistral_classifier`."""
    return lora_mistral_classifier(
        lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, num_classes=1, **_7B, lora_rank=lora_rank,
        lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )


def qlora_mistral_reward_7b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    *,
    quantize_base: bool = True,
) -> TransformerDecoder:
    """:func:`lora_mistral_reward_7b` on NF4 base weights (QLoRA); the head stays dense."""
    return lora_mistral_reward_7b(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, lora_rank, lora_alpha,
                                  lora_dropout, use_dora, quantize_base)
