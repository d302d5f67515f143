"""Llama 3.3 model builders: Llama 3.3 70B has the architecture of Llama 3.1 70B (new weights)."""

from typing import List

from torchtune.models.llama3_1._model_builders import llama3_1_70b, lora_llama3_1_70b
from torchtune.modules import TransformerDecoder
from torchtune.modules.peft import LORA_ATTN_MODULES


def llama3_3_70b() -> TransformerDecoder:
    """Llama 3.3 70B: the dimensions of :func:`~torchtune.models.llama3_1.llama3_1_70b`."""
    return llama3_1_70b()


def lora_llama3_3_70b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """Llama 3.3 70B with LoRA adapters; see :func:`~torchtune.models.llama3_1.lora_llama3_1_70b`."""
    return lora_llama3_1_70b(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, lora_rank, lora_alpha,
                             lora_dropout, use_dora, quantize_base)


def qlora_llama3_3_70b(
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
    """Llama 3.3 70B with LoRA adapters on NF4 base weights (QLoRA); see :func:`lora_llama3_3_70b`."""
    return lora_llama3_3_70b(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, lora_rank, lora_alpha,
                             lora_dropout, use_dora, quantize_base)
