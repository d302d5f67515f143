"""Llama 3 model builders: one plain function per published size and variant.

The sizes are data (``_8B``, ``_70B``, from the models' ``params.json``); each builder passes
them to the component builder.
"""

from typing import List

from torchtune.models.llama3._component_builders import llama3, lora_llama3
from torchtune.modules import TransformerDecoder
from torchtune.modules.peft import LORA_ATTN_MODULES

_8B = dict(vocab_size=128_256, num_layers=32, num_heads=32, num_kv_heads=8, embed_dim=4096,
           max_seq_len=8192, intermediate_dim=14336, attn_dropout=0.0, norm_eps=1e-5, rope_base=500_000)
_70B = dict(vocab_size=128_256, num_layers=80, num_heads=64, num_kv_heads=8, embed_dim=8192,
            max_seq_len=8192, intermediate_dim=28672, attn_dropout=0.0, norm_eps=1e-5, rope_base=500_000)


def llama3_8b() -> TransformerDecoder:
    """Llama 3 8B: 32 layers, 32 query / 8 key-value heads, dim 4096, MLP 14336, vocab 128256, context 8192."""
    return llama3(**_8B)


def lora_llama3_8b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    quantize_base: bool = False,
    use_dora: bool = False,
) -> TransformerDecoder:
    """Llama 3 8B with LoRA adapters; arguments as :func:`lora_llama3`, dimensions as :func:`llama3_8b`."""
    return lora_llama3(
        lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_8B, lora_rank=lora_rank,
        lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )


def qlora_llama3_8b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    *,
    quantize_base: bool = True,
    use_dora: bool = False,
) -> TransformerDecoder:
    """Llama 3 8B with LoRA adapters on NF4 base weights (QLoRA); see :func:`lora_llama3_8b`."""
    return lora_llama3_8b(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, lora_rank, lora_alpha,
                          lora_dropout, quantize_base, use_dora)


def llama3_70b() -> TransformerDecoder:
    """Llama 3 70B: 80 layers, 64 query / 8 key-value heads, dim 8192, MLP 28672, vocab 128256, context 8192."""
    return llama3(**_70B)


def lora_llama3_70b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    quantize_base: bool = False,
    use_dora: bool = False,
) -> TransformerDecoder:
    """Llama 3 70B with LoRA adapters; arguments as :func:`lora_llama3`, dimensions as :func:`llama3_70b`."""
    return lora_llama3(
        lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_70B, lora_rank=lora_rank,
        lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )


def qlora_llama3_70b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    *,
    quantize_base: bool = True,
    use_dora: bool = False,
) -> TransformerDecoder:
    """Llama 3 70B with LoRA adapters on NF4 base weights (QLoRA); see :func:`lora_llama3_70b`."""
    return lora_llama3_70b(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, lora_rank, lora_alpha,
                           lora_dropout, quantize_base, use_dora)
