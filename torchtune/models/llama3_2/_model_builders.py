"""Llama 3.2 (text) model builders: one plain function per published size and variant.

The sizes are data (``_1B``, ``_3B``, from the models' ``params.json``); both have a 128K
context with RoPE scaling factor 32 and, as published, tied embeddings.
"""

from typing import List

from torchtune.models.llama3_2._component_builders import llama3_2, lora_llama3_2
from torchtune.modules import TransformerDecoder
from torchtune.modules.peft import LORA_ATTN_MODULES

_CONTEXT = dict(max_seq_len=131_072, rope_base=500_000, scale_factor=32, attn_dropout=0.0, norm_eps=1e-5)
_1B = dict(vocab_size=128_256, num_layers=16, num_heads=32, num_kv_heads=8, embed_dim=2048,
           intermediate_dim=8192, **_CONTEXT)
_3B = dict(vocab_size=128_256, num_layers=28, num_heads=24, num_kv_heads=8, embed_dim=3072,
           intermediate_dim=8192, **_CONTEXT)


def llama3_2_1b(tie_word_embeddings: bool = True) -> TransformerDecoder:
    """Llama 3.2 1B: 16 layers, 32 query / 8 key-value heads, dim 2048, MLP 8192, context 131072.

    Args:
        tie_word_embeddings (bool): share the embedding table with the output projection, as
            the published model does. Default True.
    """
    return llama3_2(**_1B, tie_word_embeddings=tie_word_embeddings)


def lora_llama3_2_1b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
    tie_word_embeddings: bool = True,
) -> TransformerDecoder:
    """Llama 3.2 1B with LoRA adapters; arguments as :func:`lora_llama3_2`, dimensions as :func:`llama3_2_1b`."""
    return lora_llama3_2(
        lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_1B, lora_rank=lora_rank,
        lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
        tie_word_embeddings=tie_word_embeddings,
    )


def qlora_llama3_2_1b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    *,
    quantize_base: bool = True,
    tie_word_embeddings: bool = True,
) -> TransformerDecoder:
    """Llama 3.2 1B with LoRA adapters on NF4 base weights (QLoRA); see :func:`lora_llama3_2_1b`."""
    return lora_llama3_2_1b(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, lora_rank, lora_alpha,
                            lora_dropout, use_dora, quantize_base, tie_word_embeddings)


def llama3_2_3b(tie_word_embeddings: bool = True) -> TransformerDecoder:
    """Llama 3.2 3B: 28 layers, 24 query / 8 key-value heads, dim 3072, MLP 8192, context 131072.

    Args:
        tie_word_embeddings (bool): share the embedding table with the output projection, as
            the published model does. Default True.
    """
    return llama3_2(**_3B, tie_word_embeddings=tie_word_embeddings)


def lora_llama3_2_3b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
    tie_word_embeddings: bool = True,
) -> TransformerDecoder:
    """Llama 3.2 3B with LoRA adapters; arguments as :func:`lora_llama3_2`, dimensions as :func:`llama3_2_3b`."""
    return lora_llama3_2(
        lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_3B, lora_rank=lora_rank,
        lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
        tie_word_embeddings=tie_word_embeddings,
    )


def qlora_llama3_2_3b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    *,
    quantize_base: bool = True,
    tie_word_embeddings: bool = True,
) -> TransformerDecoder:
    """Llama 3.2 3B with LoRA adapters on NF4 base weights (QLoRA); see :func:`lora_llama3_2_3b`."""
    return lora_llama3_2_3b(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, lora_rank, lora_alpha,
                            lora_dropout, use_dora, quantize_base, tie_word_embeddings)
