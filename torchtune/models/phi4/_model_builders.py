"""Phi-4 model builders: Phi-3's architecture (:func:`~torchtune.models.phi3.phi3`) at 14B.

``_14B`` is ``microsoft/phi-4/config.json`` (a ``Phi3ForCausalLM``): 40 layers, 40 query and 10
key/value heads (grouped-query attention), dim 5120, MLP 17920, vocabulary 100352, context 16384,
RoPE base 250000, RMSNorm eps 1e-5, untied output.
"""

from typing import List

from torchtune.models.phi3 import lora_phi3, phi3
from torchtune.modules import TransformerDecoder
from torchtune.modules.peft import LORA_ATTN_MODULES

_14B = dict(vocab_size=100_352, num_layers=40, num_heads=40, num_kv_heads=10, embed_dim=5120, intermediate_dim=17920,
            max_seq_len=16_384, attn_dropout=0.0, norm_eps=1e-5, rope_base=250_000)


def phi4_14b() -> TransformerDecoder:
    """Phi-4 (14B): 40 layers, 40 query / 10 key-value heads, dim 5120, MLP 17920, context 16384."""
    return phi3(**_14B)


def lora_phi4_14b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """Phi-4 with LoRA adapters; arguments as :func:`~torchtune.models.phi3.lora_phi3`, dimensions as :func:`phi4_14b`."""
    return lora_phi3(
        lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_14B, lora_rank=lora_rank,
        lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )


def qlora_phi4_14b(
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
    """Phi-4 with LoRA adapters on NF4 base weights (QLoRA); see :func:`lora_phi4_14b`."""
    return lora_phi4_14b(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, lora_rank, lora_alpha,
                         lora_dropout, use_dora, quantize_base)
