"""Code Llama 2 (Rozière et al., 2023): Llama 2 with a longer context and a few code tokens.

Code Llama is Llama 2's architecture, so these builders call the :mod:`torchtune.models.llama2`
component builders; only the sizes differ. From the published ``config.json`` files of
``meta-llama/CodeLlama-{7,13,70}b-hf``: vocabulary 32016 (Llama 2's 32000 plus infilling tokens),
context 16384 and RoPE base 1e6 (``rope_theta``), for every size.
"""

from typing import List

from torchtune.models.llama2 import llama2, lora_llama2
from torchtune.modules import TransformerDecoder
from torchtune.modules.peft import LORA_ATTN_MODULES

_COMMON = dict(vocab_size=32_016, max_seq_len=16_384, attn_dropout=0.0, norm_eps=1e-5, rope_base=1_000_000.0)
_7B = dict(_COMMON, num_layers=32, num_heads=32, num_kv_heads=32, embed_dim=4096, intermediate_dim=11008)
_13B = dict(_COMMON, num_layers=40, num_heads=40, num_kv_heads=40, embed_dim=5120, intermediate_dim=13824)
_70B = dict(_COMMON, num_layers=80, num_heads=64, num_kv_heads=8, embed_dim=8192, intermediate_dim=28672)


def code_llama2_7b() -> TransformerDecoder:
    """Code Llama 7B: 32 layers, 32 heads, dim 4096, MLP 11008, vocab 32016, context 16384, RoPE base 1e6."""
    return llama2(**_7B)


def lora_code_llama2_7b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """Code Llama 7B with LoRA adapters; arguments as :func:`~torchtune.models.llama2.lora_llama2`."""
    return lora_llama2(
        lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_7B, lora_rank=lora_rank,
        lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )


def qlora_code_llama2_7b(
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
    """Code Llama 7B with LoRA adapters on NF4 base weights (QLoRA); see :func:`lora_code_llama2_7b`."""
    return lora_code_llama2_7b(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, lora_rank, lora_alpha,
                               lora_dropout, use_dora, quantize_base)


def code_llama2_13b() -> TransformerDecoder:
    """Code Llama 13B: 40 layers, 40 heads, dim 5120, MLP 13824, vocab 32016, context 16384, RoPE base 1e6."""
    return llama2(**_13B)


def lora_code_llama2_13b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """Code Llama 13B with LoRA adapters; arguments as :func:`~torchtune.models.llama2.lora_llama2`."""
    return lora_llama2(
        lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_13B, lora_rank=lora_rank,
        lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )


def qlora_code_llama2_13b(
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
    """Code Llama 13B with LoRA adapters on NF4 base weights (QLoRA); see :func:`lora_code_llama2_13b`."""
    return lora_code_llama2_13b(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, lora_rank, lora_alpha,
                                lora_dropout, use_dora, quantize_base)


def code_llama2_70b() -> TransformerDecoder:
    """Code Llama 70B: 80 layers, 64 query / 8 key-value heads, dim 8192, MLP 28672, vocab 32016, context 16384."""
    return llama2(**_70B)


def lora_code_llama2_70b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """Code Llama 70B with LoRA adapters; arguments as :func:`~torchtune.models.llama2.lora_llama2`."""
    return lora_llama2(
        lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_70B, lora_rank=lora_rank,
        lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )


def qlora_code_llama2_70b(
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
    """Code Llama 70B with LoRA adapters on NF4 base weights (QLoRA); see :func:`lora_code_llama2_70b`."""
    return lora_code_llama2_70b(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, lora_rank, lora_alpha,
                                lora_dropout, use_dora, quantize_base)
