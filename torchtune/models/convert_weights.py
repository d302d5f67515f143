"""Convert Llama-style state dicts between the Hugging Face, Meta and torchtune layouts.

torchtune (and Meta's consolidated checkpoints) apply RoPE to interleaved channel pairs,
while Hugging Face stores q/k projections for the rotate-half formulation; converting between
them permutes the rows of each head of ``q_proj``/``k_proj``.
"""

import re
from typing import Dict, Optional

import torch

# Layer index placeholder: "{}" in these tables stands for the layer number.
_FROM_META = {
    "tok_embeddings.weight": "tok_embeddings.weight",
    "norm.weight": "norm.scale",
    "output.weight": "output.weight",
    "layers.{}.attention.wk.weight": "layers.{}.attn.k_proj.weight",
    "layers.{}.attention.wq.weight": "layers.{}.attn.q_proj.weight",
    "layers.{}.attention.wv.weight": "layers.{}.attn.v_proj.weight",
    "layers.{}.attention.wo.weight": "layers.{}.attn.output_proj.weight",
    "layers.{}.attention_norm.weight": "layers.{}.sa_norm.scale",
    "layers.{}.ffn_norm.weight": "layers.{}.mlp_norm.scale",
    "layers.{}.feed_forward.w1.weight": "layers.{}.mlp.w1.weight",
    "layers.{}.feed_forward.w2.weight": "layers.{}.mlp.w2.weight",
    "layers.{}.feed_forward.w3.weight": "layers.{}.mlp.w3.weight",
}

_FROM_HF = {
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
    "model.layers.{}.post_attention_layernorm.weight": "layers.{}.mlp_norm.scale",
    "model.norm.weight": "norm.scale",
    "lm_head.weight": "output.weight",
}

_LAYER_NUM = re.compile(r"\.(\d+)\.")


def get_mapped_key(key: str, mapping_dict: Dict[str, Optional[str]]) -> Optional[str]:
    """Map ``key`` through a table whose entries use ``{}`` for the layer number.

    Args:
        key (str): source key, such as ``"model.layers.3.mlp.up_proj.weight"``.
        mapping_dict (Dict[str, Optional[str]]): source pattern -> target pattern (None: drop the key).

    Returns:
        Optional[str]: the target key, or None if the key is to be dropped.

    Raises:
        KeyError: if the key is not in the table.
    """
    match = _LAYER_NUM.search(key)
    if match is None:
        if key not in mapping_dict:
            raise KeyError(f"Unexpected key {key!r}: not a known parameter of this model family")
        return mapping_dict[key]
    pattern = key[: match.start()] + ".{}." + key[match.end():]
    if pattern not in mapping_dict:
        raise KeyError(f"Unexpected key {key!r}: not a known parameter of this model family")
    target = mapping_dict[pattern]
    return None if target is None else target.format(match.group(1))


def _hf_permute(w: torch.Tensor, n_heads: int, head_dim: int) -> torch.Tensor:
    """Rotate-half (HF) rows -> interleaved rows, within each head."""
    rest = w.shape[1:]
    return w.view(n_heads, 2, head_dim // 2, *rest).transpose(1, 2).reshape(n_heads * head_dim, *rest)


def _hf_unpermute(w: torch.Tensor, n_heads: int, head_dim: int) -> torch.Tensor:
    """Interleaved rows -> rotate-half (HF) rows, within each head."""
    rest = w.shape[1:]
    return w.view(n_heads, head_dim // 2, 2, *rest).transpose(1, 2).reshape(n_heads * head_dim, *rest)


def meta_to_tune(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Meta consolidated checkpoint -> torchtune state dict (same RoPE layout, renamed keys)."""
    out = {}
    for key, value in state_dict.items():
        if key.endswith("rope.freqs") or key == "rope.freqs":
            continue
        out[get_mapped_key(key, _FROM_META)] = value
    return out


def tune_to_meta(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """torchtune state dict -> Meta consolidated checkpoint keys."""
    inverse = {v: k for k, v in _FROM_META.items()}
    return {get_mapped_key(key, inverse): value for key, value in state_dict.items()}


def hf_to_tune(
    state_dict: Dict[str, torch.Tensor],
    num_heads: int = 32,
    num_kv_heads: int = 32,
    dim: int = 4096,
    head_dim: Optional[int] = None,
) -> Dict[str, torch.Tensor]:
    """Hugging Face Llama-style state dict -> torchtune state dict.

    Args:
        state_dict (Dict[str, torch.Tensor]): HF keys (``model.layers.0.self_attn.q_proj.weight``...).
        num_heads (int): query heads. Default 32.
        num_kv_heads (int): key/value heads. Default 32.
        dim (int): model dimension. Default 4096.
        head_dim (Optional[int]): per-head size; ``dim // num_heads`` if None.

    Returns:
        Dict[str, torch.Tensor]: torchtune keys with q/k rows in the interleaved RoPE layout.

    Raises:
        KeyError: on a key that is not part of a Llama-style model.
    """
    head_dim = head_dim or dim // num_heads
    out = {}
    for key, value in state_dict.items():
        new_key = get_mapped_key(key, _FROM_HF)
        if new_key is None:
            continue
        if "q_proj" in key:
            value = _hf_permute(value, num_heads, head_dim)
        elif "k_proj" in key:
            value = _hf_permute(value, num_kv_heads, head_dim)
        out[new_key] = value
    return out


def tune_to_hf(
    state_dict: Dict[str, torch.Tensor],
    num_heads: int = 32,
    num_kv_heads: int = 32,
    dim: int = 4096,
    head_dim: Optional[int] = None,
) -> Dict[str, torch.Tensor]:
    """torchtune state dict -> Hugging Face Llama-style state dict (inverse of ``hf_to_tune``).

    Args:
        state_dict (Dict[str, torch.Tensor]): torchtune keys.
        num_heads (int): query heads. Default 32.
        num_kv_heads (int): key/value heads. Default 32.
        dim (int): model dimension. Default 4096.
        head_dim (Optional[int]): per-head size; ``dim // num_heads`` if None.

    Returns:
        Dict[str, torch.Tensor]: HF keys with q/k rows in the rotate-half layout.
    """
    head_dim = head_dim or dim // num_heads
    inverse = {v: k for k, v in _FROM_HF.items() if v is not None}
    out = {}
    for key, value in state_dict.items():
        new_key = get_mapped_key(key, inverse)
        if "q_proj" in key:
            value = _hf_unpermute(value, num_heads, head_dim)
        elif "k_proj" in key:
            value = _hf_unpermute(value, num_kv_heads, head_dim)
        out[new_key] = value
    return out
