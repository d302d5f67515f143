"""Gemma 3 text-decoder state dicts between the Hugging Face (``Gemma3ForCausalLM``) and torchtune layouts.

Only keys change: Gemma 3 models rotate halves of each head (:class:`Gemma3RotaryPositionalEmbeddings`),
so Hugging Face's q/k rows and per-head q/k norm weights are kept in their order. The four layer
norms map as Gemma 2's; ``self_attn.q_norm`` / ``k_norm`` are our ``attn.q_norm`` / ``attn.k_norm``.

The 4B, 12B and 27B checkpoints are ``Gemma3ForConditionalGeneration`` image-text models: the
same text decoder under another prefix, beside a SigLIP vision tower and a projector, with the
decoder's ``config.json`` nested under ``text_config``. :func:`gemma3_text_config` and
:func:`gemma3_decoder_key` turn such a checkpoint into the ``Gemma3ForCausalLM`` one of its
text decoder, which the functions above then convert.
"""

from typing import Any, Dict, Optional

import torch

from torchtune.models.convert_weights import get_mapped_key
from torchtune.models.gemma2._convert_weights import _GEMMA2_FROM_HF

_GEMMA3_FROM_HF = {
    **_GEMMA2_FROM_HF,
    "model.layers.{}.self_attn.q_norm.weight": "layers.{}.attn.q_norm.scale",
    "model.layers.{}.self_attn.k_norm.weight": "layers.{}.attn.k_norm.scale",
}


def gemma3_hf_to_tune(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Hugging Face ``Gemma3ForCausalLM`` state dict -> torchtune keys (tensors unchanged).

    Args:
        state_dict (Dict[str, torch.Tensor]): HF keys (``model.layers.0.self_attn.q_norm.weight``...).

    Returns:
        Dict[str, torch.Tensor]: torchtune keys.

    Raises:
        KeyError: on a key that is not part of a Gemma 3 text decoder (the vision tower of the
            4B-27B ``Gemma3ForConditionalGeneration`` checkpoints included).
    """
    out = {}
    for key, value in state_dict.items():
        new_key = get_mapped_key(key, _GEMMA3_FROM_HF)
        if new_key is not None:
            out[new_key] = value
    return out


def gemma3_tune_to_hf(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """torchtune Gemma 3 state dict -> Hugging Face ``Gemma3ForCausalLM`` keys (inverse of :func:`gemma3_hf_to_tune`).

    Args:
        state_dict (Dict[str, torch.Tensor]): torchtune keys.

    Returns:
        Dict[str, torch.Tensor]: HF keys.

    Raises:
        KeyError: on a key that is not part of a Gemma 3 model.
    """
    inverse = {v: k for k, v in _GEMMA3_FROM_HF.items() if v is not None}
    return {get_mapped_key(key, inverse): value for key, value in state_dict.items()}


# Where Gemma3ForConditionalGeneration keeps its text decoder. Both names are found on disk: the
# published checkpoints (written by transformers 4.50) and transformers 5's save_pretrained use
# language_model.model; transformers 4.52-4.57 saved its in-memory name, model.language_model.
# The head is tied to the embeddings, so lm_head is rarely stored.
_DECODER_PREFIXES = (
    ("model.language_model.", "model."),
    ("language_model.model.", "model."),
    ("language_model.lm_head.", "lm_head."),
    ("lm_head.", "lm_head."),
)
# The image side, which a text decoder does not use.
IMAGE_PREFIXES = ("model.vision_tower.", "vision_tower.", "model.multi_modal_projector.", "multi_modal_projector.")
# Top-level fields of the image-text config.json that describe its text decoder too.
_SHARED_FIELDS = ("bos_token_id", "eos_token_id", "pad_token_id", "tie_word_embeddings", "torch_dtype", "dtype",
                  "transformers_version")


def is_gemma3_image_text(config: Dict[str, Any]) -> bool:
    """Whether ``config`` (a parsed ``config.json``) is a ``Gemma3ForConditionalGeneration`` one.

    Args:
        config (Dict[str, Any]): parsed config.json.

    Returns:
        bool: True for ``model_type: gemma3`` or a nested ``text_config`` (the 4B-27B checkpoints);
        False for the text-only ``gemma3_text`` of 270M and 1B.

    Raises:
        ValueError: if ``model_type`` is ``gemma3`` but there is no ``text_config`` to read the decoder from.
    """
    if config.get("model_type") == "gemma3" and not isinstance(config.get("text_config"), dict):
        raise ValueError("config.json has model_type 'gemma3' (Gemma3ForConditionalGeneration) but no "
                         "'text_config' object with the text decoder's dimensions")
    return isinstance(config.get("text_config"), dict)


def gemma3_text_config(config: Dict[str, Any]) -> Dict[str, Any]:
    """The ``Gemma3ForCausalLM`` ``config.json`` of the text decoder inside a ``Gemma3ForConditionalGeneration`` one.

    ``text_config`` with ``model_type: gemma3_text`` and ``architectures: ["Gemma3ForCausalLM"]``,
    plus the top-level token ids, dtype, ``tie_word_embeddings`` (default true) and
    ``transformers_version`` where ``text_config`` does not set them. The published ``text_config`` lists only the
    fields that differ from ``Gemma3TextConfig``'s defaults; they are kept as they are, so that
    transformers fills in the same defaults as for the image-text model.

    Args:
        config (Dict[str, Any]): parsed config.json of the image-text model.

    Returns:
        Dict[str, Any]: a new dict; ``config`` is not changed.

    Raises:
        ValueError: if ``config`` has no ``text_config`` object.
    """
    if not isinstance(config.get("text_config"), dict):
        raise ValueError("config.json has no 'text_config' object: not a Gemma3ForConditionalGeneration config")
    text = dict(config["text_config"])
    for field in _SHARED_FIELDS:
        if field in config and field not in text:
            text[field] = config[field]
    # Gemma 3 ties its output projection to the embeddings (Gemma3TextConfig's default); said
    # explicitly since the checkpointer drops a stored copy only where config.json says so.
    text.setdefault("tie_word_embeddings", True)
    text["model_type"] = "gemma3_text"
    text["architectures"] = ["Gemma3ForCausalLM"]
    return text


def gemma3_decoder_key(key: str) -> Optional[str]:
    """A ``Gemma3ForConditionalGeneration`` key -> the ``Gemma3ForCausalLM`` key of the same tensor.

    ``model.language_model.layers.0.mlp.up_proj.weight`` and ``language_model.model.layers.0...``
    both become ``model.layers.0.mlp.up_proj.weight``.

    Args:
        key (str): key of the image-text checkpoint.

    Returns:
        Optional[str]: the text decoder's key; None for the vision tower and the multi-modal
        projector (keys under :data:`IMAGE_PREFIXES`), which a text decoder does not have.

    Raises:
        KeyError: for a key that is under none of those prefixes.
    """
    for old, new in _DECODER_PREFIXES:
        if key.startswith(old):
            return new + key[len(old):]
    if key.startswith(IMAGE_PREFIXES):
        return None
    raise KeyError(
        f"Unexpected key {key!r}: not under model.language_model. / language_model.model. (the text decoder) "
        "nor the vision tower or multi-modal projector of a Gemma3ForConditionalGeneration checkpoint"
    )
