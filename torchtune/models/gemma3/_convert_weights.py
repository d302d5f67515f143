"""Gemma 3 text-decoder state dicts between the Hugging Face (``Gemma3ForCausalLM``) and torchtune layouts.

Only keys change: Gemma 3 models rotate halves of each head (:class:`Gemma3RotaryPositionalEmbeddings`),
so Hugging Face's q/k rows and per-head q/k norm weights are kept in their order. The four layer
norms map as Gemma 2's; ``self_attn.q_norm`` / ``k_norm`` are our ``attn.q_norm`` / ``attn.k_norm``.
"""

from typing import Dict

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
