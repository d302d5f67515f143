"""Gemma 2 state dicts between the Hugging Face and torchtune layouts.

Gemma 2's layers have four norms. Hugging Face's ``post_attention_layernorm`` normalises the
attention output (our ``sa_scale``), not the MLP input as in Llama and Gemma 1 (there it is our
``mlp_norm``); the MLP input norm is ``pre_feedforward_layernorm`` and the MLP output norm
``post_feedforward_layernorm`` (our ``mlp_scale``). q/k rows are permuted between Hugging Face's
rotate-half layout and torchtune's interleaved RoPE, as for Llama.
"""

from typing import Dict, Optional

import torch

from torchtune.models.convert_weights import _hf_permute, _hf_unpermute, get_mapped_key

_GEMMA2_FROM_HF = {
    "model.embed_tokens.weight": "tok_embeddings.weight",
    "model.layers.{}.self_attn.q_proj.weight": "layers.{}.attn.q_proj.weight",
    "model.layers.{}.self_attn.k_proj.weight": "layers.{}.attn.k_proj.weight",
    "model.layers.{}.self_attn.v_proj.weight": "layers.{}.attn.v_proj.weight",
    "model.layers.{}.self_attn.o_proj.weight": "layers.{}.attn.output_proj.weight",
    "model.layers.{}.self_attn.rotary_emb.inv_freq": None,
    "model.layers.{}.mlp.gate_proj.weight": "layers.{}.mlp.w1.weight",
    "model.layers.{}.mlp.up_proj.weight": "layers.{}.mlp.w3.weight",
    "model.layers.{}.mlp.down_proj.weight": "layers.{}.mlp.w2.weight",
    "model.layers.{}.input_layernorm.weight": "layers.{}.sa_norm.scale",
    "model.layers.{}.post_attention_layernorm.weight": "layers.{}.sa_scale.scale",
    "model.layers.{}.pre_feedforward_layernorm.weight": "layers.{}.mlp_norm.scale",
    "model.layers.{}.post_feedforward_layernorm.weight": "layers.{}.mlp_scale.scale",
    "model.norm.weight": "norm.scale",
    "lm_head.weight": "output.weight",
}


def gemma2_hf_to_tune(
    state_dict: Dict[str, torch.Tensor],
    num_heads: int = 8,
    num_kv_heads: int = 4,
    dim: int = 2304,
    head_dim: Optional[int] = None,
) -> Dict[str, torch.Tensor]:
    """Hugging Face Gemma 2 state dict -> torchtune state dict.

    Args:
        state_dict (Dict[str, torch.Tensor]): HF keys (``model.layers.0.self_attn.q_proj.weight``...).
        num_heads (int): query heads. Default 8.
        num_kv_heads (int): key/value heads. Default 4.
        dim (int): model dimension. Default 2304.
        head_dim (Optional[int]): per-head size; ``dim // num_heads`` if None.

    Returns:
        Dict[str, torch.Tensor]: torchtune keys, q/k rows in the interleaved RoPE layout.

    Raises:
        KeyError: on a key that is not part of a Gemma 2 model.
    """
    head_dim = head_dim or dim // num_heads
    out = {}
    for key, value in state_dict.items():
        new_key = get_mapped_key(key, _GEMMA2_FROM_HF)
        if new_key is None:
            continue
        if new_key.endswith("attn.q_proj.weight"):
            value = _hf_permute(value, num_heads, head_dim)
        elif new_key.endswith("attn.k_proj.weight"):
            value = _hf_permute(value, num_kv_heads, head_dim)
        out[new_key] = value
    return out


def gemma2_tune_to_hf(
    state_dict: Dict[str, torch.Tensor],
    num_heads: int = 8,
    num_kv_heads: int = 4,
    dim: int = 2304,
    head_dim: Optional[int] = None,
) -> Dict[str, torch.Tensor]:
    """torchtune Gemma 2 state dict -> Hugging Face keys (inverse of :func:`gemma2_hf_to_tune`).

    Args:
        state_dict (Dict[str, torch.Tensor]): torchtune keys.
        num_heads (int): query heads. Default 8.
        num_kv_heads (int): key/value heads. Default 4.
        dim (int): model dimension. Default 2304.
        head_dim (Optional[int]): per-head size; ``dim // num_heads`` if None.

    Returns:
        Dict[str, torch.Tensor]: HF keys, q/k rows in the rotate-half layout.

    Raises:
        KeyError: on a key that is not part of a Gemma 2 model.
    """
    head_dim = head_dim or dim // num_heads
    inverse = {v: k for k, v in _GEMMA2_FROM_HF.items() if v is not None}
    out = {}
    for key, value in state_dict.items():
        if key.endswith("attn.q_proj.weight"):
            value = _hf_unpermute(value, num_heads, head_dim)
        elif key.endswith("attn.k_proj.weight"):
            value = _hf_unpermute(value, num_kv_heads, head_dim)
        out[get_mapped_key(key, inverse)] = value
    return out
