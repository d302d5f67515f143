from torchtune.models.gemma import GemmaChatTemplate, GemmaTokenizer, gemma_tokenizer
from torchtune.models.gemma3._component_builders import gemma3, lora_gemma3
from torchtune.models.gemma3._model_builders import (
    gemma3_12b,
    gemma3_1b,
    gemma3_270m,
    gemma3_27b,
    gemma3_4b,
    lora_gemma3_12b,
    lora_gemma3_1b,
    lora_gemma3_270m,
    lora_gemma3_27b,
    lora_gemma3_4b,
    qlora_gemma3_12b,
    qlora_gemma3_1b,
    qlora_gemma3_270m,
    qlora_gemma3_27b,
    qlora_gemma3_4b,
)
from torchtune.models.gemma3._positional_embeddings import Gemma3RotaryPositionalEmbeddings

__all__ = [
    "Gemma3RotaryPositionalEmbeddings",
    "GemmaChatTemplate",
    "GemmaTokenizer",
    "gemma3",
    "gemma3_12b",
    "gemma3_1b",
    "gemma3_270m",
    "gemma3_27b",
    "gemma3_4b",
    "gemma_tokenizer",
    "lora_gemma3",
    "lora_gemma3_12b",
    "lora_gemma3_1b",
    "lora_gemma3_270m",
    "lora_gemma3_27b",
    "lora_gemma3_4b",
    "qlora_gemma3_12b",
    "qlora_gemma3_1b",
    "qlora_gemma3_270m",
    "qlora_gemma3_27b",
    "qlora_gemma3_4b",
]
