"""Gemma 3 text-decoder builders: one plain function per published size, on :func:`gemma3`.

Dimensions are those of the published ``config.json`` files (``google/gemma-3-270m``,
``-1b-pt``, and the ``text_config`` of ``-4b-pt``, ``-12b-pt``, ``-27b-pt``; the ``-it``
checkpoints share them). All sizes: RMSNorm epsilon 1e-6, RoPE base 1e6 in the global layers
and 10000 in the local ones, one global layer in six, QK-norm, tied embeddings, no soft-capping.

| size | layers | heads (q / kv) | head_dim | dim | MLP | vocab | window | context | global RoPE scaling | query_pre_attn_scalar |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
| 270M | 18 | 4 / 1 | 256 | 640 | 2048 | 262144 | 512 | 32768 | none | 256 |
| 1B | 26 | 4 / 1 | 256 | 1152 | 6912 | 262144 | 512 | 32768 | none | 256 |
| 4B | 34 | 8 / 4 | 256 | 2560 | 10240 | 262208 | 1024 | 131072 | linear, 8 | 256 |
| 12B | 48 | 16 / 8 | 256 | 3840 | 15360 | 262208 | 1024 | 131072 | linear, 8 | 256 |
| 27B | 62 | 32 / 16 | 128 | 5376 | 21504 | 262208 | 1024 | 131072 | linear, 8 | 168 |

The 4B, 12B and 27B checkpoints are ``Gemma3ForConditionalGeneration`` models (with a vision
tower); these builders are their text decoders, which ``FullModelHFCheckpointer`` with
``model_type: GEMMA3`` loads from those checkpoints (see ``docs/gemma.md``).
"""

from typing import List

from torchtune.models.gemma3._component_builders import gemma3, lora_gemma3
from torchtune.modules import TransformerDecoder
from torchtune.modules.peft import LORA_ATTN_MODULES

_GEMMA3 = dict(attn_dropout=0.0, norm_eps=1e-6, rope_base=1_000_000.0, local_rope_base=10_000.0,
               sliding_window_pattern=6)
_SMALL = dict(_GEMMA3, vocab_size=262_144, max_seq_len=32_768, sliding_window_size=512, rope_scale_factor=1.0)
_LARGE = dict(_GEMMA3, vocab_size=262_208, max_seq_len=131_072, sliding_window_size=1024, rope_scale_factor=8.0)
_270M = dict(_SMALL, num_layers=18, num_heads=4, head_dim=256, num_kv_heads=1, embed_dim=640,
             intermediate_dim=2048, query_pre_attn_scalar=256)
_1B = dict(_SMALL, num_layers=26, num_heads=4, head_dim=256, num_kv_heads=1, embed_dim=1152,
           intermediate_dim=6912, query_pre_attn_scalar=256)
_4B = dict(_LARGE, num_layers=34, num_heads=8, head_dim=256, num_kv_heads=4, embed_dim=2560,
           intermediate_dim=10_240, query_pre_attn_scalar=256)
_12B = dict(_LARGE, num_layers=48, num_heads=16, head_dim=256, num_kv_heads=8, embed_dim=3840,
            intermediate_dim=15_360, query_pre_attn_scalar=256)
_27B = dict(_LARGE, num_layers=62, num_heads=32, head_dim=128, num_kv_heads=16, embed_dim=5376,
            intermediate_dim=21_504, query_pre_attn_scalar=168)


def gemma3_270m() -> TransformerDecoder:
    """Gemma 3 270M: 18 layers, 4 query heads sharing 1 key-value head of 256, dim 640, MLP 2048, window 512, context 32768."""
    return gemma3(**_270M)


def lora_gemma3_270m(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """Gemma 3 270M with LoRA adapters; arguments as :func:`lora_gemma3`, dimensions as :func:`gemma3_270m`."""
    return lora_gemma3(
        lora_attn_modules, apply_lora_to_mlp, **_270M, lora_rank=lora_rank, lora_alpha=lora_alpha,
        lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )


def qlora_gemma3_270m(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    *,
    quantize_base: bool = True,
) -> TransformerDecoder:
    """Gemma 3 270M with LoRA adapters on NF4-quantised frozen weights (QLoRA); as :func:`lora_gemma3_270m`."""
    return lora_gemma3_270m(
        lora_attn_modules, apply_lora_to_mlp, lora_rank=lora_rank, lora_alpha=lora_alpha,
        lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )

def gemma3_1b() -> TransformerDecoder:
    """Gemma 3 1B: 26 layers, 4 query heads sharing 1 key-value head of 256, dim 1152, MLP 6912, window 512, context 32768."""
    return gemma3(**_1B)


def lora_gemma3_1b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """Gemma 3 1B with LoRA adapters; arguments as :func:`lora_gemma3`, dimensions as :func:`gemma3_1b`."""
    return lora_gemma3(
        lora_attn_modules, apply_lora_to_mlp, **_1B, lora_rank=lora_rank, lora_alpha=lora_alpha,
        lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )


def qlora_gemma3_1b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    *,
    quantize_base: bool = True,
) -> TransformerDecoder:
    """Gemma 3 1B with LoRA adapters on NF4-quantised frozen weights (QLoRA); as :func:`lora_gemma3_1b`."""
    return lora_gemma3_1b(
        lora_attn_modules, apply_lora_to_mlp, lora_rank=lora_rank, lora_alpha=lora_alpha,
        lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )

def gemma3_4b() -> TransformerDecoder:
    """Gemma 3 4B (text decoder): 34 layers, 8 query / 4 key-value heads of 256, dim 2560, MLP 10240, window 1024, context 131072."""
    return gemma3(**_4B)


def lora_gemma3_4b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """Gemma 3 4B (text decoder) with LoRA adapters; arguments as :func:`lora_gemma3`, dimensions as :func:`gemma3_4b`."""
    return lora_gemma3(
        lora_attn_modules, apply_lora_to_mlp, **_4B, lora_rank=lora_rank, lora_alpha=lora_alpha,
        lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )


def qlora_gemma3_4b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    *,
    quantize_base: bool = True,
) -> TransformerDecoder:
    """Gemma 3 4B (text decoder) with LoRA adapters on NF4-quantised frozen weights (QLoRA); as :func:`lora_gemma3_4b`."""
    return lora_gemma3_4b(
        lora_attn_modules, apply_lora_to_mlp, lora_rank=lora_rank, lora_alpha=lora_alpha,
        lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )

def gemma3_12b() -> TransformerDecoder:
    """Gemma 3 12B (text decoder): 48 layers, 16 query / 8 key-value heads of 256, dim 3840, MLP 15360, window 1024, context 131072."""
    return gemma3(**_12B)


def lora_gemma3_12b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """Gemma 3 12B (text decoder) with LoRA adapters; arguments as :func:`lora_gemma3`, dimensions as :func:`gemma3_12b`."""
    return lora_gemma3(
        lora_attn_modules, apply_lora_to_mlp, **_12B, lora_rank=lora_rank, lora_alpha=lora_alpha,
        lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )


def qlora_gemma3_12b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    *,
    quantize_base: bool = True,
) -> TransformerDecoder:
    """Gemma 3 12B (text decoder) with LoRA adapters on NF4-quantised frozen weights (QLoRA); as :func:`lora_gemma3_12b`."""
    return lora_gemma3_12b(
        lora_attn_modules, apply_lora_to_mlp, lora_rank=lora_rank, lora_alpha=lora_alpha,
        lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )

def gemma3_27b() -> TransformerDecoder:
    """Gemma 3 27B (text decoder): 62 layers, 32 query / 16 key-value heads of 128, dim 5376, MLP 21504, window 1024, context 131072, query_pre_attn_scalar 168."""
    return gemma3(**_27B)


def lora_gemma3_27b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """Gemma 3 27B (text decoder) with LoRA adapters; arguments as :func:`lora_gemma3`, dimensions as :func:`gemma3_27b`."""
    return lora_gemma3(
        lora_attn_modules, apply_lora_to_mlp, **_27B, lora_rank=lora_rank, lora_alpha=lora_alpha,
        lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )


def qlora_gemma3_27b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    *,
    quantize_base: bool = True,
) -> TransformerDecoder:
    """Gemma 3 27B (text decoder) with LoRA adapters on NF4-quantised frozen weights (QLoRA); as :func:`lora_gemma3_27b`."""
    return lora_gemma3_27b(
        lora_attn_modules, apply_lora_to_mlp, lora_rank=lora_rank, lora_alpha=lora_alpha,
        lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )
