"""Qwen2 model builders: one plain function per published size.

Dimensions are those of the ``config.json`` files of ``Qwen/Qwen2-0.5B``, ``Qwen2-1.5B`` and
``Qwen2-7B`` (the instruct models share them): RMSNorm epsilon 1e-6, RoPE base 1e6, context 32768.
The 0.5B and 1.5B models tie the output projection to the embedding table, so their LoRA
builders have no ``apply_lora_to_output``.
"""

from typing import List

from torchtune.models.qwen2._component_builders import lora_qwen2, qwen2
from torchtune.modules import TransformerDecoder
from torchtune.modules.peft import LORA_ATTN_MODULES

_0_5B = dict(vocab_size=151_936, num_layers=24, num_heads=14, num_kv_heads=2, embed_dim=896, intermediate_dim=4864,
             max_seq_len=32_768, attn_dropout=0.0, norm_eps=1e-6, rope_base=1_000_000.0, tie_word_embeddings=True)
_1_5B = dict(_0_5B, num_layers=28, num_heads=12, num_kv_heads=2, embed_dim=1536, intermediate_dim=8960)
_7B = dict(_0_5B, vocab_size=152_064, num_layers=28, num_heads=28, num_kv_heads=4, embed_dim=3584,
           intermediate_dim=18_944, tie_word_embeddings=False)


def qwen2_0_5b() -> TransformerDecoder:
    """Qwen2 0.5B: 24 layers, 14 query / 2 key-value heads, dim 896, MLP 4864, tied embeddings."""
    return qwen2(**_0_5B)


def qwen2_1_5b() -> TransformerDecoder:
    """Qwen2 1.5B: 28 layers, 12 query / 2 key-value heads, dim 1536, MLP 8960, tied embeddings."""
    return qwen2(**_1_5B)


def qwen2_7b() -> TransformerDecoder:
    """Qwen2 7B: 28 layers, 28 query / 4 key-value heads, dim 3584, MLP 18944, vocabulary 152064."""
    return qwen2(**_7B)


def lora_qwen2_0_5b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """Qwen2 0.5B with LoRA adapters; arguments as :func:`lora_qwen2` (the tied output is never adapted)."""
    return lora_qwen2(lora_attn_modules, apply_lora_to_mlp, False, **_0_5B, lora_rank=lora_rank,
                      lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora,
                      quantize_base=quantize_base)


def lora_qwen2_1_5b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """Qwen2 1.5B with LoRA adapters; arguments as :func:`lora_qwen2` (the tied output is never adapted)."""
    return lora_qwen2(lora_attn_modules, apply_lora_to_mlp, False, **_1_5B, lora_rank=lora_rank,
                      lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora,
                      quantize_base=quantize_base)


def lora_qwen2_7b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """Qwen2 7B with LoRA adapters; arguments as :func:`lora_qwen2`, dimensions as :func:`qwen2_7b`."""
    return lora_qwen2(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_7B, lora_rank=lora_rank,
                      lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora,
                      quantize_base=quantize_base)
