from torchtune.models.gemma._component_builders import gemma, lora_gemma
from torchtune.models.gemma._model_builders import (
    gemma_2b,
    gemma_7b,
    gemma_tokenizer,
    lora_gemma_2b,
    lora_gemma_7b,
    qlora_gemma_2b,
    qlora_gemma_7b,
)
from torchtune.models.gemma._prompt_template import GemmaChatTemplate
from torchtune.models.gemma._tokenizer import GemmaTokenizer
from torchtune.models.gemma.rms_norm import GemmaRMSNorm

__all__ = [
    "GemmaChatTemplate",
    "GemmaRMSNorm",
    "GemmaTokenizer",
    "gemma",
    "gemma_2b",
    "gemma_7b",
    "gemma_tokenizer",
    "lora_gemma",
    "lora_gemma_2b",
    "lora_gemma_7b",
    "qlora_gemma_2b",
    "qlora_gemma_7b",
]
