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
        QWEN3: Qwen3 (Qwen2's layout with per-head q/k norms and no q/k/v biases).
        PHI3_MINI: Phi-3 mini (fused ``qkv_proj`` and ``gate_up_proj`` split on load).
        PHI4: Phi-4 (the Phi-3 layout, with grouped-query attention).
        GEMMA2: Gemma 2 (post-attention and pre/post feed-forward norms, tied embeddings).
        GEMMA3: Gemma 3 text decoder (``Gemma3ForCausalLM``: Gemma 2's norms plus per-head q/k
            norms; q/k rows kept in the HF rotate-half layout). Also reads the text decoder of the
            4B-27B ``Gemma3ForConditionalGeneration`` image-text checkpoints (vision tower left
            out) and saves it as a ``Gemma3ForCausalLM``.
        LLAMA3_VISION: Llama 3.2 Vision (no Hugging Face conversion yet).
        REWARD: Llama-style reward and classifier models (``LlamaForSequenceClassification``,
            ``MistralForSequenceClassification``): their ``score`` head is our ``output``.
        CLIP_TEXT: CLIP text encoder (no Hugging Face conversion yet).
        T5_ENCODER: T5 encoder (no Hugging Face conversion yet).
        HF_DECODER: any decoder ``torchtune.models.hf_decoder`` builds from its ``config.json``;
            the parameter names follow config.json's ``model_type`` (``docs/hf_models.md``).

    Members without a conversion can be named in configs; ``FullModelHFCheckpointer`` raises a
    ``ValueError`` naming the model type when asked to convert one.
    """

    GEMMA = "gemma"
    GEMMA2 = "gemma2"
    GEMMA3 = "gemma3"
    LLAMA2 = "llama2"
    LLAMA3 = "llama3"
    LLAMA3_2 = "llama3_2"
    LLAMA3_VISION = "llama3_vision"
    MISTRAL = "mistral"
    PHI3_MINI = "phi3_mini"
    PHI4 = "phi4"
    REWARD = "reward"
    QWEN2 = "qwen2"
    QWEN3 = "qwen3"
    CLIP_TEXT = "clip_text"
    T5_ENCODER = "t5_encoder"
    HF_DECODER = "hf_decoder"


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
