"""Qwen2.5 model builders: one plain function per published size and variant, on :func:`~torchtune.models.qwen2.qwen2`.

Qwen2.5 keeps Qwen2's architecture (q/k/v biases, rotate-half RoPE with base 1e6, RMSNorm
epsilon 1e-6); the dimensions below are those of each ``Qwen/Qwen2.5-*`` ``config.json``. Base and
instruct models share their weights' shapes; they differ in ``max_position_embeddings`` (131072
for the 1.5B-72B base models, 32768 for the instruct ones and the 0.5B and 3B), which only sizes
RoPE's cache and the default KV cache. The 0.5B, 1.5B and 3B models tie the output projection to
the embedding table; LoRA on it is refused there (``apply_lora_to_output`` raises).
"""

from typing import List

from torchtune.models.qwen2 import lora_qwen2, qwen2
from torchtune.modules import TransformerDecoder
from torchtune.modules.peft import LORA_ATTN_MODULES

_SMALL = dict(vocab_size=151_936, attn_dropout=0.0, norm_eps=1e-6, rope_base=1_000_000.0, tie_word_embeddings=True)
_LARGE = dict(_SMALL, vocab_size=152_064, tie_word_embeddings=False)
_0_5B = dict(_SMALL, num_layers=24, num_heads=14, num_kv_heads=2, embed_dim=896, intermediate_dim=4864,
             max_seq_len=32_768)
_1_5B_BASE = dict(_SMALL, num_layers=28, num_heads=12, num_kv_heads=2, embed_dim=1536, intermediate_dim=8960,
                  max_seq_len=131_072)
_1_5B_INSTRUCT = dict(_1_5B_BASE, max_seq_len=32_768)
_3B = dict(_SMALL, num_layers=36, num_heads=16, num_kv_heads=2, embed_dim=2048, intermediate_dim=11_008,
           max_seq_len=32_768)
_7B_BASE = dict(_LARGE, num_layers=28, num_heads=28, num_kv_heads=4, embed_dim=3584, intermediate_dim=18_944,
                max_seq_len=131_072)
_7B_INSTRUCT = dict(_7B_BASE, max_seq_len=32_768)
_14B_BASE = dict(_LARGE, num_layers=48, num_heads=40, num_kv_heads=8, embed_dim=5120, intermediate_dim=13_824,
                 max_seq_len=131_072)
_14B_INSTRUCT = dict(_14B_BASE, max_seq_len=32_768)
_32B_BASE = dict(_LARGE, num_layers=64, num_heads=40, num_kv_heads=8, embed_dim=5120, intermediate_dim=27_648,
                 max_seq_len=131_072)
_32B_INSTRUCT = dict(_32B_BASE, max_seq_len=32_768)
_72B_BASE = dict(_LARGE, num_layers=80, num_heads=64, num_kv_heads=8, embed_dim=8192, intermediate_dim=29_568,
                 max_seq_len=131_072)
_72B_INSTRUCT = dict(_72B_BASE, max_seq_len=32_768)


def qwen2_5_0_5b() -> TransformerDecoder:
    """Qwen2.5 0.5B: 24 layers, 14 query / 2 key-value heads, dim 896, MLP 4864, tied embeddings."""
    return qwen2(**_0_5B)


def qwen2_5_1_5b_base() -> TransformerDecoder:
    """Qwen2.5 1.5B base: 28 layers, 12 query / 2 key-value heads, dim 1536, MLP 8960, tied, context 131072."""
    return qwen2(**_1_5B_BASE)


def qwen2_5_1_5b_instruct() -> TransformerDecoder:
    """Qwen2.5 1.5B Instruct: the 1.5B base dimensions with a 32768-token context."""
    return qwen2(**_1_5B_INSTRUCT)


def qwen2_5_3b() -> TransformerDecoder:
    """Qwen2.5 3B: 36 layers, 16 query / 2 key-value heads, dim 2048, MLP 11008, tied embeddings."""
    return qwen2(**_3B)


def qwen2_5_7b_base() -> TransformerDecoder:
    """Qwen2.5 7B base: 28 layers, 28 query / 4 key-value heads, dim 3584, MLP 18944, context 131072."""
    return qwen2(**_7B_BASE)


def qwen2_5_7b_instruct() -> TransformerDecoder:
    """Qwen2.5 7B Instruct: the 7B base dimensions with a 32768-token context."""
    return qwen2(**_7B_INSTRUCT)


def qwen2_5_14b_base() -> TransformerDecoder:
    """Qwen2.5 14B base: 48 layers, 40 query / 8 key-value heads, dim 5120, MLP 13824, context 131072."""
    return qwen2(**_14B_BASE)


def qwen2_5_14b_instruct() -> TransformerDecoder:
    """Qwen2.5 14B Instruct: the 14B base dimensions with a 32768-token context."""
    return qwen2(**_14B_INSTRUCT)


def qwen2_5_32b_base() -> TransformerDecoder:
    """Qwen2.5 32B base: 64 layers, 40 query / 8 key-value heads, dim 5120, MLP 27648, context 131072."""
    return qwen2(**_32B_BASE)


def qwen2_5_32b_instruct() -> TransformerDecoder:
    """Qwen2.5 32B Instruct: the 32B base dimensions with a 32768-token context."""
    return qwen2(**_32B_INSTRUCT)


def qwen2_5_72b_base() -> TransformerDecoder:
    """Qwen2.5 72B base: 80 layers, 64 query / 8 key-value heads, dim 8192, MLP 29568, context 131072."""
    return qwen2(**_72B_BASE)


def qwen2_5_72b_instruct() -> TransformerDecoder:
    """Qwen2.5 72B Instruct: the 72B base dimensions with a 32768-token context."""
    return qwen2(**_72B_INSTRUCT)


def lora_qwen2_5_0_5b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """:func:`qwen2_5_0_5b` with LoRA adapters; arguments as :func:`~torchtune.models.qwen2.lora_qwen2`."""
    return lora_qwen2(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_0_5B, lora_rank=lora_rank,
                      lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora,
                      quantize_base=quantize_base)


def lora_qwen2_5_1_5b_base(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """:func:`qwen2_5_1_5b_base` with LoRA adapters; arguments as :func:`~torchtune.models.qwen2.lora_qwen2`."""
    return lora_qwen2(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_1_5B_BASE, lora_rank=lora_rank,
                      lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora,
                      quantize_base=quantize_base)


def lora_qwen2_5_1_5b_instruct(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """:func:`qwen2_5_1_5b_instruct` with LoRA adapters; arguments as :func:`~torchtune.models.qwen2.lora_qwen2`."""
    return lora_qwen2(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_1_5B_INSTRUCT, lora_rank=lora_rank,
                      lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora,
                      quantize_base=quantize_base)


def lora_qwen2_5_3b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """:func:`qwen2_5_3b` with LoRA adapters; arguments as :func:`~torchtune.models.qwen2.lora_qwen2`."""
    return lora_qwen2(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_3B, lora_rank=lora_rank,
                      lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora,
                      quantize_base=quantize_base)


def lora_qwen2_5_7b_base(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """:func:`qwen2_5_7b_base` with LoRA adapters; arguments as :func:`~torchtune.models.qwen2.lora_qwen2`."""
    return lora_qwen2(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_7B_BASE, lora_rank=lora_rank,
                      lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora,
                      quantize_base=quantize_base)


def lora_qwen2_5_7b_instruct(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """:func:`qwen2_5_7b_instruct` with LoRA adapters; arguments as :func:`~torchtune.models.qwen2.lora_qwen2`."""
    return lora_qwen2(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_7B_INSTRUCT, lora_rank=lora_rank,
                      lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora,
                      quantize_base=quantize_base)


def lora_qwen2_5_14b_base(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """:func:`qwen2_5_14b_base` with LoRA adapters; arguments as :func:`~torchtune.models.qwen2.lora_qwen2`."""
    return lora_qwen2(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_14B_BASE, lora_rank=lora_rank,
                      lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora,
                      quantize_base=quantize_base)


def lora_qwen2_5_14b_instruct(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """:func:`qwen2_5_14b_instruct` with LoRA adapters; arguments as :func:`~torchtune.models.qwen2.lora_qwen2`."""
    return lora_qwen2(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_14B_INSTRUCT, lora_rank=lora_rank,
                      lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora,
                      quantize_base=quantize_base)


def lora_qwen2_5_32b_base(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """:func:`qwen2_5_32b_base` with LoRA adapters; arguments as :func:`~torchtune.models.qwen2.lora_qwen2`."""
    return lora_qwen2(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_32B_BASE, lora_rank=lora_rank,
                      lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora,
                      quantize_base=quantize_base)


def lora_qwen2_5_32b_instruct(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """:func:`qwen2_5_32b_instruct` with LoRA adapters; arguments as :func:`~torchtune.models.qwen2.lora_qwen2`."""
    return lora_qwen2(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_32B_INSTRUCT, lora_rank=lora_rank,
                      lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora,
                      quantize_base=quantize_base)


def lora_qwen2_5_72b_base(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """:func:`qwen2_5_72b_base` with LoRA adapters; arguments as :func:`~torchtune.models.qwen2.lora_qwen2`."""
    return lora_qwen2(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_72B_BASE, lora_rank=lora_rank,
                      lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora,
                      quantize_base=quantize_base)


def lora_qwen2_5_72b_instruct(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """:func:`qwen2_5_72b_instruct` with LoRA adapters; arguments as :func:`~torchtune.models.qwen2.lora_qwen2`."""
    return lora_qwen2(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_72B_INSTRUCT, lora_rank=lora_rank,
                      lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora,
                      quantize_base=quantize_base)
