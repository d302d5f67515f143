"""Phi-3 model builders: one plain function per published size and variant.

``_MINI`` is Phi-3-mini-4k-instruct (``microsoft/Phi-3-mini-4k-instruct/config.json``): 32 layers,
32 query and 32 key/value heads, dim 3072, MLP 8192, vocabulary 32064, context 4096, RoPE base
10000, RMSNorm eps 1e-5. Its config.json also names ``sliding_window: 2047``, which torchtune's
Phi-3 does not apply (attention is global), so loading it logs a window warning; the two agree on
sequences of up to 2047 tokens.
"""

from typing import List

from torchtune.models.phi3._component_builders import lora_phi3, phi3
from torchtune.modules import TransformerDecoder
from torchtune.modules.peft import LORA_ATTN_MODULES

_MINI = dict(vocab_size=32_064, num_layers=32, num_heads=32, num_kv_heads=32, embed_dim=3072, intermediate_dim=8192,
             max_seq_len=4096, attn_dropout=0.0, norm_eps=1e-5, rope_base=10_000)


def phi3_mini() -> TransformerDecoder:
    """Phi-3 mini (3.8B): 32 layers, 32 heads (no GQA), dim 3072, MLP 8192, vocabulary 32064, context 4096."""
    return phi3(**_MINI)


def lora_phi3_mini(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """Phi-3 mini with LoRA adapters; arguments as :func:`lora_phi3`, dimensions as :func:`phi3_mini`."""
    return lora_phi3(
        lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_MINI, lora_rank=lora_rank,
        lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )


def qlora_phi3_mini(
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
    """Phi-3 mini with LoRA adapters on NF4 base weights (QLoRA); see :func:`lora_phi3_mini`."""
    return lora_phi3_mini(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, lora_rank, lora_alpha,
                          lora_dropout, use_dora, quantize_base)
