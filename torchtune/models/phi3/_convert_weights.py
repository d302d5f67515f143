"""Phi-3 / Phi-4 weights between Hugging Face's fused layout and torchtune's separate projections.

``Phi3ForCausalLM`` stores q, k and v as one ``qkv_proj`` (rows ``[q; k; v]``) and the MLP's gate
and up projections as one ``gate_up_proj`` (rows ``[gate; up]``). torchtune keeps them apart, so
LoRA can adapt q and v alone. q/k rows stay in HF's rotate-half order, which
:class:`Phi3RotaryPositionalEmbeddings` expects; no row permutation is needed.
``FullModelHFCheckpointer`` (``PHI3_MINI``, ``PHI4``) uses these two functions.
"""

import re
from typing import Dict, Optional

import torch

from torchtune.models.convert_weights import get_mapped_key

_FROM_HF = {
    "model.embed_tokens.weight": "tok_embeddings.weight",
    "model.layers.{}.self_attn.qkv_proj.weight": "layers.{}.attn.qkv_proj.weight",
    "model.layers.{}.self_attn.o_proj.weight": "layers.{}.attn.output_proj.weight",
    "model.layers.{}.mlp.gate_up_proj.weight": "layers.{}.mlp.w13.weight",
    "model.layers.{}.mlp.down_proj.weight": "layers.{}.mlp.w2.weight",
    "model.layers.{}.input_layernorm.weight": "layers.{}.sa_norm.scale",
    "model.layers.{}.post_attention_layernorm.weight": "layers.{}.mlp_norm.scale",
    "model.layers.{}.self_attn.rotary_emb.inv_freq": None,
    "model.norm.weight": "norm.scale",
    "lm_head.weight": "output.weight",
}
_TO_HF = {v: k for k, v in _FROM_HF.items() if v is not None}
# Intermediate (fused) torchtune-side names and the separate projections they hold, in HF's row order.
_FUSED_PARTS = {"attn.qkv_proj": ("attn.q_proj", "attn.k_proj", "attn.v_proj"), "mlp.w13": ("mlp.w1", "mlp.w3")}
_FUSED = re.compile(r"^layers\.(\d+)\.(attn\.qkv_proj|mlp\.w13)\.weight$")


def phi3_hf_to_tune(
    state_dict: Dict[str, torch.Tensor],
    num_heads: Optional[int],
    num_kv_heads: Optional[int],
    dim: Optional[int],
) -> Dict[str, torch.Tensor]:
    """Convert a Hugging Face Phi-3 / Phi-4 state dict to torchtune keys, splitting fused projections.

    Args:
        state_dict (Dict[str, torch.Tensor]): ``Phi3ForCausalLM`` tensors (all or some of them).
        num_heads (Optional[int]): query heads. With all three dimensions None, ``qkv_proj`` is
            split into three equal parts (multi-head attention, as Phi-3 mini).
        num_kv_heads (Optional[int]): key/value heads (Phi-4: 10 of 40); ``num_heads`` if None.
        dim (Optional[int]): model dimension; ``head_dim = dim // num_heads``.

    Returns:
        Dict[str, torch.Tensor]: torchtune keys; ``qkv_proj`` ``[(n_h + 2 n_kv) h_d, d]`` becomes
        ``q_proj`` ``[n_h h_d, d]``, ``k_proj`` and ``v_proj`` ``[n_kv h_d, d]``; ``gate_up_proj``
        ``[2 f, d]`` becomes ``w1`` (gate) and ``w3`` (up), ``[f, d]`` each.

    Raises:
        KeyError: on a key that is not a Phi-3 parameter.
        ValueError: if only some of the dimensions are given, or a ``qkv_proj`` does not have the
            rows they imply.
    """
    given = [x is not None for x in (num_heads, dim)]
    if any(given) and not all(given):
        raise ValueError("give num_heads and dim together (or neither, for an equal three-way split)")
    out: Dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        new_key = get_mapped_key(key, _FROM_HF)
        if new_key is None:
            continue
        match = _FUSED.match(new_key)
        if match is None:
            out[new_key] = value
            continue
        layer, fused = match.groups()
        if fused == "mlp.w13":
            sizes = [value.shape[0] // 2] * 2
        elif num_heads is None:
            sizes = [value.shape[0] // 3] * 3
        else:
            head_dim = dim // num_heads
            q_rows, kv_rows = num_heads * head_dim, (num_kv_heads or num_heads) * head_dim
            sizes = [q_rows, kv_rows, kv_rows]
        if sum(sizes) != value.shape[0]:
            raise ValueError(
                f"{key} has {value.shape[0]} rows; the dimensions imply {' + '.join(map(str, sizes))}"
            )
        for part, tensor in zip(_FUSED_PARTS[fused], value.split(sizes, dim=0)):
            out[f"layers.{layer}.{part}.weight"] = tensor
    return out


def phi3_tune_to_hf(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Convert a torchtune Phi-3 / Phi-4 state dict to Hugging Face keys, fusing q/k/v and gate/up.

    Concatenation needs no head counts: ``qkv_proj`` is ``cat([q, k, v])`` along rows, whatever the
    number of kv heads, and ``gate_up_proj`` is ``cat([w1, w3])``.

    Args:
        state_dict (Dict[str, torch.Tensor]): torchtune keys (a layer may carry neither or all of
            the projections a fused tensor is made of).

    Returns:
        Dict[str, torch.Tensor]: ``Phi3ForCausalLM`` keys.

    Raises:
        KeyError: if a layer has some but not all of q/k/v (or of w1/w3), or a key is not a Phi-3
            parameter (LoRA tensors included: merge adapters first).
    """
    remaining = dict(state_dict)
    layers = sorted({int(k.split(".")[1]) for k in state_dict if k.startswith("layers.")})
    for layer in layers:
        for fused, parts in _FUSED_PARTS.items():
            keys = [f"layers.{layer}.{p}.weight" for p in parts]
            present = [k for k in keys if k in remaining]
            if not present:
                continue
            if len(present) != len(keys):
                missing = sorted(set(keys) - set(present))
                raise KeyError(f"{missing[0]} (needed to build the fused Phi-3 {fused})")
            remaining[f"layers.{layer}.{fused}.weight"] = torch.cat([remaining.pop(k) for k in keys], dim=0)
    return {get_mapped_key(k, _TO_HF): v for k, v in remaining.items()}
