"""Qwen2 / Qwen2.5 / Qwen3 weights between Hugging Face and torchtune key names.

Only keys change: torchtune's Qwen models rotate halves (:class:`Qwen2RotaryPositionalEmbeddings`),
the layout Hugging Face stores q/k rows in, so no rows are permuted (unlike the Llama conversion).
``FullModelHFCheckpointer`` uses these functions for ``model_type: QWEN2`` and ``QWEN3``.
"""

from typing import Dict, Optional

import torch

from torchtune.models.convert_weights import get_mapped_key

_FROM_HF: Dict[str, Optional[str]] = {
    "model.embed_tokens.weight": "tok_embeddings.weight",
    "model.layers.{}.self_attn.q_proj.weight": "layers.{}.attn.q_proj.weight",
    "model.layers.{}.self_attn.q_proj.bias": "layers.{}.attn.q_proj.bias",
    "model.layers.{}.self_attn.k_proj.weight": "layers.{}.attn.k_proj.weight",
    "model.layers.{}.self_attn.k_proj.bias": "layers.{}.attn.k_proj.bias",
    "model.layers.{}.self_attn.v_proj.weight": "layers.{}.attn.v_proj.weight",
    "model.layers.{}.self_attn.v_proj.bias": "layers.{}.attn.v_proj.bias",
    "model.layers.{}.self_attn.o_proj.weight": "layers.{}.attn.output_proj.weight",
    # Qwen3's per-head query/key norms (absent from Qwen2 checkpoints).
    "model.layers.{}.self_attn.q_norm.weight": "layers.{}.attn.q_norm.scale",
    "model.layers.{}.self_attn.k_norm.weight": "layers.{}.attn.k_norm.scale",
    "model.layers.{}.self_attn.rotary_emb.inv_freq": None,
    "model.layers.{}.mlp.gate_proj.weight": "layers.{}.mlp.w1.weight",
    "model.layers.{}.mlp.up_proj.weight": "layers.{}.mlp.w3.weight",
    "model.layers.{}.mlp.down_proj.weight": "layers.{}.mlp.w2.weight",
    "model.layers.{}.input_layernorm.weight": "layers.{}.sa_norm.scale",
    "model.layers.{}.post_attention_layernorm.weight": "layers.{}.mlp_norm.scale",
    "model.norm.weight": "norm.scale",
    "lm_head.weight": "output.weight",
}
_TO_HF = {v: k for k, v in _FROM_HF.items() if v is not None}


def _rename(state_dict: Dict[str, torch.Tensor], table: Dict[str, Optional[str]]) -> Dict[str, torch.Tensor]:
    out = {}
    for key, value in state_dict.items():
        new_key = get_mapped_key(key, table)  # raises KeyError naming an unknown key
        if new_key is not None:
            out[new_key] = value
    return out


def qwen2_hf_to_tune(
    state_dict: Dict[str, torch.Tensor],
    num_heads: int = 32,
    num_kv_heads: int = 32,
    dim: int = 4096,
    head_dim: int = None,
    tie_word_embeddings: bool = False,
) -> Dict[str, torch.Tensor]:
    """Rename a Hugging Face Qwen2 / Qwen2.5 / Qwen3 state dict to torchtune keys.

    Args:
        state_dict (Dict[str, torch.Tensor]): Hugging Face keys (``model.layers.0.self_attn.q_proj.weight``, ...).
        num_heads (int): unused (no rows are permuted); kept for torchtune's signature. Default 32.
        num_kv_heads (int): unused, as ``num_heads``. Default 32.
        dim (int): unused, as ``num_heads``. Default 4096.
        head_dim (int): unused, as ``num_heads``. Default None.
        tie_word_embeddings (bool): drop ``lm_head.weight``, which a tied model has no place
            for (its output projection is the embedding table). Default False.

    Returns:
        Dict[str, torch.Tensor]: torchtune keys (``layers.0.attn.q_proj.weight``, ...); tensors are not copied.

    Raises:
        KeyError: on a key that is not part of a Qwen2 / Qwen3 checkpoint.
    """
    if tie_word_embeddings:
        state_dict = {k: v for k, v in state_dict.items() if k != "lm_head.weight"}
    return _rename(state_dict, _FROM_HF)


def qwen2_tune_to_hf(
    state_dict: Dict[str, torch.Tensor],
    num_heads: int = 32,
    num_kv_heads: int = 32,
    dim: int = 4096,
    head_dim: int = None,
    tie_word_embeddings: bool = False,
):
    """Rename a torchtune Qwen2 / Qwen2.5 / Qwen3 state dict to Hugging Face keys (inverse of :func:`qwen2_hf_to_tune`).

    Args:
        state_dict (Dict[str, torch.Tensor]): torchtune keys.
        num_heads (int): unused; kept for torchtune's signature. Default 32.
        num_kv_heads (int): unused. Default 32.
        dim (int): unused. Default 4096.
        head_dim (int): unused. Default None.
        tie_word_embeddings (bool): write no ``lm_head.weight`` (transformers ties it to the
            embedding on load). Default False.

    Returns:
        Dict[str, torch.Tensor]: Hugging Face keys.

    Raises:
        KeyError: on a key that is not part of a torchtune Qwen model.
    """
    if tie_word_embeddings:
        state_dict = {k: v for k, v in state_dict.items() if k != "output.weight"}
    return _rename(state_dict, _TO_HF)
