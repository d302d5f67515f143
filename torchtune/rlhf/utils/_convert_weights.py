"""Reward-model (sequence-classification) state dicts between Hugging Face and torchtune.

A Hugging Face ``LlamaForSequenceClassification``-style checkpoint is a Llama body plus a ``score``
head of shape ``[num_labels, dim]``; torchtune's reward builders (``llama2_reward_7b``, the
``*_classifier`` builders) call that head ``output``.
"""
from typing import Dict, Optional

import torch

from torchtune.models.convert_weights import hf_to_tune, tune_to_hf


def reward_hf_to_tune(
    state_dict: Dict[str, torch.Tensor],
    num_heads: int = 32,
    num_kv_heads: int = 32,
    dim: int = 4096,
    head_dim: Optional[int] = None,
) -> Dict[str, torch.Tensor]:
    """Hugging Face reward/classifier state dict -> torchtune keys.

    ``score.weight`` becomes ``output.weight``; a ``score.bias`` (TRL can save one) is dropped, as
    transformers' own ``score`` layer and our heads have no bias; the body converts as a Llama.

    Args:
        state_dict (Dict[str, torch.Tensor]): HF keys (``model.layers.0...``, ``score.weight``).
        num_heads (int): query heads. Default 32.
        num_kv_heads (int): key/value heads. Default 32.
        dim (int): model dimension. Default 4096.
        head_dim (Optional[int]): per-head size; ``dim // num_heads`` if None.

    Returns:
        Dict[str, torch.Tensor]: torchtune keys with q/k rows in the interleaved RoPE layout.

    Raises:
        KeyError: on a key that is not part of a Llama-style reward model (``lm_head.weight`` included).
    """
    if "lm_head.weight" in state_dict:
        raise KeyError("Unexpected key 'lm_head.weight': a reward model's head is 'score.weight'")
    renamed = {("lm_head.weight" if k == "score.weight" else k): v for k, v in state_dict.items() if k != "score.bias"}
    return hf_to_tune(renamed, num_heads=num_heads, num_kv_heads=num_kv_heads, dim=dim, head_dim=head_dim)


def reward_tune_to_hf(
    state_dict: Dict[str, torch.Tensor],
    num_heads: int = 32,
    num_kv_heads: int = 32,
    dim: int = 4096,
) -> Dict[str, torch.Tensor]:
    """torchtune reward/classifier state dict -> Hugging Face keys (inverse of :func:`reward_hf_to_tune`).

    Args:
        state_dict (Dict[str, torch.Tensor]): torchtune keys; the head is ``output.weight``.
        num_heads (int): query heads. Default 32.
        num_kv_heads (int): key/value heads. Default 32.
        dim (int): model dimension; the head size is ``dim // num_heads``. Default 4096.

    Returns:
        Dict[str, torch.Tensor]: HF keys with the head as ``score.weight``.
    """
    hf = tune_to_hf(state_dict, num_heads=num_heads, num_kv_heads=num_kv_heads, dim=dim)
    return {("score.weight" if k == "lm_head.weight" else k): v for k, v in hf.items()}
