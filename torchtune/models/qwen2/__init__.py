from torchtune.models.qwen2._component_builders import lora_qwen2, qwen2
from torchtune.models.qwen2._convert_weights import qwen2_hf_to_tune, qwen2_tune_to_hf
from torchtune.models.qwen2._model_builders import (
    lora_qwen2_0_5b,
    lora_qwen2_1_5b,
    lora_qwen2_7b,
    qwen2_0_5b,
    qwen2_1_5b,
    qwen2_7b,
)
from torchtune.models.qwen2._positional_embeddings import Qwen2RotaryPositionalEmbeddings

__all__ = [
    "lora_qwen2",
    "lora_qwen2_0_5b",
    "lora_qwen2_1_5b",
    "lora_qwen2_7b",
    "qwen2",
    "qwen2_0_5b",
    "qwen2_1_5b",
    "qwen2_7b",
    "qwen2_hf_to_tune",
    "qwen2_tune_to_hf",
    "Qwen2RotaryPositionalEmbeddings",
]
from torchtune.models.qwen2._tokenizer import Qwen2Tokenizer, qwen2_tokenizer

__all__ += ["Qwen2Tokenizer", "qwen2_tokenizer"]
