"""Llama 3.1 model builders: one plain function per published size and variant.

The sizes are data (``_8B``, ``_70B``, ``_405B``, from the models' ``params.json``); all three
have a 128K context with RoPE scaling factor 8.
"""

from typing import List

from torchtune.models.llama3_1._component_builders import llama3_1, lora_llama3_1
from torchtune.modules import TransformerDecoder
from torchtune.modules.peft import LORA_ATTN_MODULES

_CONTEXT = dict(max_seq_len=131_072, rope_base=500_000, scale_factor=8, attn_dropout=0.0, norm_eps=1e-5)
_8B = dict(vocab_size=128_256, num_layers=32, num_heads=32, num_kv_heads=8, embed_dim=4096,
           intermediate_dim=14336, **_CONTEXT)
_70B = dict(vocab_size=128_256, num_layers=80, num_heads=64, num_kv_heads=8, embed_dim=8192,
            intermediate_dim=28672, **_CONTEXT)
_405B = dict(vocab_size=128_256, num_layers=126, num_heads=128, num_kv_heads=8, embed_dim=16384,
             intermediate_dim=53248, **_CONTEXT)


def llama3_1_8b() -> TransformerDecoder:
    """Llama 3.1 8B: 32 layers, 32 query / 8 key-value heads, dim 4096, MLP 14336, context 131072."""
    return llama3_1(**_8B)


def lora_llama3_1_8b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """Llama 3.1 8B with LoRA adapters; arguments as :func:`lora_llama3_1`, dimensions as :func:`llama3_1_8b`."""
    return lora_llama3_1(
        lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_8B, lora_rank=lora_rank,
        lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )


def qlora_llama3_1_8b(
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
    """Llama 3.1 8B with LoRA adapters on NF4 base weights (QLoRA); see :func:`lora_llama3_1_8b`."""
    return lora_llama3_1_8b(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, lora_rank, lora_alpha,
                            lora_dropout, use_dora, quantize_base)


def llama3_1_70b() -> TransformerDecoder:
    """Llama 3.1 70B: 80 layers, 64 query / 8 key-value heads, dim 8192, MLP 28672, context 131072."""
    return llama3_1(**_70B)


def lora_llama3_1_70b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """Llama 3.1 70B with LoRA adapters; arguments as :func:`lora_llama3_1`, dimensions as :func:`llama3_1_70b`."""
    return lora_llama3_1(
        lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_70B, lora_rank=lora_rank,
        lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )


def qlora_llama3_1_70b(
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
    """Llama 3.1 70B with LoRA adapters on NF4 base weights (QLoRA); see :func:`lora_llama3_1_70b`."""
    return lora_llama3_1_70b(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, lora_rank, lora_alpha,
                             lora_dropout, use_dora, quantize_base)


def llama3_1_405b() -> TransformerDecoder:
    """Llama 3.1 405B: 126 layers, 128 query / 8 key-value heads, dim 16384, MLP 53248, context 131072."""
    return llama3_1(**_405B)


def lora_llama3_1_405b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """Llama 3.1 405B with LoRA adapters (torchtune offers no DoRA at this size); see :func:`lora_llama3_1`."""
    return lora_llama3_1(
        lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_405B, lora_rank=lora_rank,
        lora_alpha=lora_alpha, lora_dropout=lora_dropout, quantize_base=quantize_base,
    )


def qlora_llama3_1_405b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    *,
    quantize_base: bool = True,
) -> TransformerDecoder:
    """Llama 3.1 405B with LoRA adapters on NF4 base weights (QLoRA); see :func:`lora_llama3_1_405b`."""
    return lora_llama3_1_405b(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, lora_rank, lora_alpha,
                              lora_dropout, quantize_base)
