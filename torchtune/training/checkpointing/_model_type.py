"""The model families a checkpointer knows how to convert."""

from enum import Enum
from typing import Union


class ModelType(Enum):
    """Model family of a checkpoint; picks the key/layout conversion.

    Configs name it by member (``model_type: LLAMA3``); the value is the lower-case name.

    Members:
        LLAMA2: Llama 2 (and Code Llama) with Hugging Face / Meta keys.
        LLAMA3: Llama 3 and 3.1.
        LLAMA3_2: Llama 3.2 text models (tied embeddings in the 1B/3B sizes).
        MISTRAL: Mistral 7B.
        GEMMA: Gemma (tied embeddings, ``head_dim`` from config.json).
        QWEN2: Qwen2 and Qwen2.5 (q/k/v biases; q/k rows kept in the HF rotate-half layout).
        PHI3_MINI: Phi-3 mini (fused ``qkv_proj`` and ``gate_up_proj`` split on load).
    """

    LLAMA2 = "llama2"
    LLAMA3 = "llama3"
    LLAMA3_2 = "llama3_2"
    MISTRAL = "mistral"
    GEMMA = "gemma"
    QWEN2 = "qwen2"
    PHI3_MINI = "phi3_mini"


def resolve_model_type(model_type: Union[str, ModelType]) -> ModelType:
    """Turn a config value (member name or value, any case) into a ``ModelType``.

    Args:
        model_type (Union[str, ModelType]): such as ``"LLAMA3"``, ``"llama3"`` or ``ModelType.LLAMA3``.

    Returns:
        ModelType: the matching member.

    Raises:
        ValueError: if the name is not a known family; the message lists the valid names.
    """
    if isinstance(model_type, ModelType):
        return model_type
    if isinstance(model_type, str):
        key = model_type.strip().upper()
        if key in ModelType.__members__:
            return ModelType[key]
    valid = ", ".join(ModelType.__members__)
    raise ValueError(f"Unknown model_type {model_type!r}. Valid model types: {valid}")
