"""Gemma 2 model builders: one plain function per published size, on :func:`gemma2`.

Dimensions are those of the ``config.json`` of ``google/gemma-2-2b``, ``-9b`` and ``-27b`` (the
``-it`` checkpoints share them): vocabulary 256000, context 8192, RMSNorm epsilon 1e-6, RoPE base
10000, a 4096-token window in every other layer, attention scores capped at 50 and logits at 30,
tied embeddings. ``query_pre_attn_scalar`` is the head size (256) except in 27B, where it is
``embed_dim / num_heads`` = 144 with heads of 128.
"""

from typing import List

from torchtune.models.gemma2._component_builders import gemma2, lora_gemma2
from torchtune.modules import TransformerDecoder
from torchtune.modules.peft import LORA_ATTN_MODULES

_GEMMA2 = dict(vocab_size=256_000, max_seq_len=8192, attn_dropout=0.0, norm_eps=1e-6, rope_base=10_000,
               hidden_capping_value=50.0, final_capping_value=30.0, sliding_window_size=4096)
_2B = dict(_GEMMA2, num_layers=26, num_heads=8, head_dim=256, num_kv_heads=4, embed_dim=2304,
           intermediate_dim=9216, query_pre_attn_scalar=256)
_9B = dict(_GEMMA2, num_layers=42, num_heads=16, head_dim=256, num_kv_heads=8, embed_dim=3584,
           intermediate_dim=14_336, query_pre_attn_scalar=256)
_27B = dict(_GEMMA2, num_layers=46, num_heads=32, head_dim=128, num_kv_heads=16, embed_dim=4608,
            intermediate_dim=36_864, query_pre_attn_scalar=144)


def gemma2_2b() -> TransformerDecoder:
    """Gemma 2 2B: 26 layers, 8 query / 4 key-value heads of 256, dim 2304, MLP 9216."""
    return gemma2(**_2B)


def lora_gemma2_2b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """Gemma 2 2B with LoRA adapters; arguments as :func:`lora_gemma2`, dimensions as :func:`gemma2_2b`."""
    return lora_gemma2(
        lora_attn_modules, apply_lora_to_mlp, **_2B, lora_rank=lora_rank, lora_alpha=lora_alpha,
        lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )


def qlora_gemma2_2b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    *,
    quantize_base: bool = True,
) -> TransformerDecoder:
    """Gemma 2 2B with LoRA adapters on NF4-quantised frozen weights (QLoRA); as :func:`lora_gemma2_2b`."""
    return lora_gemma2_2b(
        lora_attn_modules, apply_lora_to_mlp, lora_rank=lora_rank, lora_alpha=lora_alpha,
        lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )

def gemma2_9b() -> TransformerDecoder:
    """Gemma 2 9B: 42 layers, 16 query / 8 key-value heads of 256, dim 3584, MLP 14336."""
    return gemma2(**_9B)


def lora_gemma2_9b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """Gemma 2 9B with LoRA adapters; arguments as :func:`lora_gemma2`, dimensions as :func:`gemma2_9b`."""
    return lora_gemma2(
        lora_attn_modules, apply_lora_to_mlp, **_9B, lora_rank=lora_rank, lora_alpha=lora_alpha,
        lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )


def qlora_gemma2_9b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    *,
    quantize_base: bool = True,
) -> TransformerDecoder:
    """Gemma 2 9B with LoRA adapters on NF4-quantised frozen weights (QLoRA); as :func:`lora_gemma2_9b`."""
    return lora_gemma2_9b(
        lora_attn_modules, apply_lora_to_mlp, lora_rank=lora_rank, lora_alpha=lora_alpha,
        lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )

def gemma2_27b() -> TransformerDecoder:
    """Gemma 2 27B: 46 layers, 32 query / 16 key-value heads of 128, dim 4608, MLP 36864, query_pre_attn_scalar 144."""
    return gemma2(**_27B)


def lora_gemma2_27b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """Gemma 2 27B with LoRA adapters; arguments as :func:`lora_gemma2`, dimensions as :func:`gemma2_27b`."""
    return lora_gemma2(
        lora_attn_modules, apply_lora_to_mlp, **_27B, lora_rank=lora_rank, lora_alpha=lora_alpha,
        lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )


def qlora_gemma2_27b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    *,
    quantize_base: bool = True,
) -> TransformerDecoder:
    """Gemma 2 27B with LoRA adapters on NF4-quantised frozen weights (QLoRA); as :func:`lora_gemma2_27b`."""
    return lora_gemma2_27b(
        lora_attn_modules, apply_lora_to_mlp, lora_rank=lora_rank, lora_alpha=lora_alpha,
        lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )
