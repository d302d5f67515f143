"""Llama2 model builders: one plain function per published size and variant.

The sizes are data (``_7B``, ``_13B``, ``_70B``); each builder passes them to the component builder.
"""

from typing import List

from torchtune.models.llama2._component_builders import (
    llama2,
    llama2_classifier,
    lora_llama2,
    lora_llama2_classifier,
)
from torchtune.modules import TransformerDecoder
from torchtune.modules.peft import LORA_ATTN_MODULES

_7B = dict(vocab_size=32_000, num_layers=32, num_heads=32, num_kv_heads=32, embed_dim=4096,
           max_seq_len=4096, attn_dropout=0.0, norm_eps=1e-5)
_13B = dict(vocab_size=32_000, num_layers=40, num_heads=40, num_kv_heads=40, embed_dim=5120,
            intermediate_dim=13824, max_seq_len=4096, attn_dropout=0.0, norm_eps=1e-5)
_70B = dict(vocab_size=32_000, num_layers=80, num_heads=64, num_kv_heads=8, embed_dim=8192,
            intermediate_dim=28672, max_seq_len=4096, attn_dropout=0.0, norm_eps=1e-5)


def llama2_7b() -> TransformerDecoder:
    """Llama2 7B: 32 layers, 32 heads, dim 4096, MLP 11008, vocab 32000, context 4096."""
    return llama2(**_7B)


def lora_llama2_7b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """Llama2 7B with LoRA adapters; arguments as :func:`lora_llama2`, dimensions as :func:`llama2_7b`."""
    return lora_llama2(
        lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_7B, lora_rank=lora_rank,
        lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )


def qlora_llama2_7b(
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
    """Llama2 7B with LoRA adapters on NF4 base weights (QLoRA, Dettmers et al., 2023); see :func:`lora_llama2_7b`."""
    return lora_llama2_7b(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, lora_rank, lora_alpha,
                         lora_dropout, use_dora, quantize_base)


def llama2_13b() -> TransformerDecoder:
    """Llama2 13B: 40 layers, 40 heads, dim 5120, MLP 13824, vocab 32000, context 4096."""
    return llama2(**_13B)


def lora_llama2_13b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """Llama2 13B with LoRA adapters; arguments as :func:`lora_llama2`, dimensions as :func:`llama2_13b`."""
    return lora_llama2(
        lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_13B, lora_rank=lora_rank,
        lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )


def qlora_llama2_13b(
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
    """Llama2 13B with LoRA adapters on NF4 base weights (QLoRA, Dettmers et al., 2023); see :func:`lora_llama2_13b`."""
    return lora_llama2_13b(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, lora_rank, lora_alpha,
                         lora_dropout, use_dora, quantize_base)


def llama2_70b() -> TransformerDecoder:
    """Llama2 70B: 80 layers, 64 query / 8 key-value heads, dim 8192, MLP 28672, vocab 32000, context 4096."""
    return llama2(**_70B)


def lora_llama2_70b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """Llama2 70B with LoRA adapters; arguments as :func:`lora_llama2`, dimensions as :func:`llama2_70b`."""
    return lora_llama2(
        lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_70B, lora_rank=lora_rank,
        lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )


def qlora_llama2_70b(
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
    """Llama2 70B with LoRA adapters on NF4 base weights (QLoRA, Dettmers et al., 2023); see :func:`lora_llama2_70b`."""
    return lora_llama2_70b(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, lora_rank, lora_alpha,
                         lora_dropout, use_dora, quantize_base)


def llama2_reward_7b() -> TransformerDecoder:
    """Llama2 7B as a reward model: :func:`llama2_7b` with a ``[4096] -> [1]`` head instead of the LM head."""
    return llama2_classifier(num_classes=1, **_7B)


def lora_llama2_reward_7b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """:func:`llama2_reward_7b` with LoRA adapters; arguments as :func:`lora_llama2_classifier`."""
    return lora_llama2_classifier(
        lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, num_classes=1, **_7B, lora_rank=lora_rank,
        lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )


def qlora_llama2_reward_7b(
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
    """:func:`lora_llama2_reward_7b` on NF4 base weights (QLoRA); the head stays dense."""
    return lora_llama2_reward_7b(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, lora_rank, lora_alpha,
                                 lora_dropout, use_dora, quantize_base)
