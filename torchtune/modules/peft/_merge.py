from typing import Any, Dict

import torch

from torchtune.modules.low_precision._nf4 import dequantize
from torchtune.modules.peft._utils import _is_adapter_key


@torch.no_grad()
def get_merged_lora_ckpt(state_dict: Dict[str, Any], rank: int, alpha: float) -> Dict[str, Any]:
    """Fold LoRA / DoRA adapters into their base weights, giving a plain dense checkpoint.

    For every ``<path>.lora_a.weight`` (``A``) and ``<path>.lora_b.weight`` (``B``), with
    ``s = alpha / rank``: LoRA gives ``W' = W + s B A``; DoRA (a ``<path>.magnitude`` ``m`` is
    present) gives ``W' = m * (W + s B A) / ||W + s B A||_row``. The sums are done in fp32 and
    cast back to the base weight's dtype. NF4 base weights are dequantized first. The adapter
    keys are dropped; the input dict is not modified.

    Args:
        state_dict (Dict[str, Any]): state dict of a LoRA/DoRA model.
        rank (int): the adapters' rank.
        alpha (float): the adapters' alpha.

    Returns:
        Dict[str, Any]: dense state dict with the keys of the base model.

    Raises:
        KeyError: if an adapter entry lacks its ``<path>.weight``, ``lora_a`` or ``lora_b`` partner.
    """
    scaling = alpha / rank
    merged = {k: dequantize(v) for k, v in state_dict.items()}
    for key in [k for k in merged if k == "lora_a.weight" or k.endswith(".lora_a.weight")]:
        prefix = key[: -len("lora_a.weight")]  # "<path>." or "" for a bare layer
        for needed in (f"{prefix}weight", f"{prefix}lora_b.weight"):
            if needed not in merged:
                raise KeyError(f"Cannot merge adapter {key}: the state dict has no {needed}")
        lora_a = merged.pop(key)
        lora_b = merged.pop(f"{prefix}lora_b.weight")
        magnitude = merged.pop(f"{prefix}magnitude", None)
        weight = merged[f"{prefix}weight"]
        new = weight.float() + scaling * (lora_b.float() @ lora_a.float())  # [out, in]
        if magnitude is not None:
            new *= (magnitude.float() / torch.linalg.vector_norm(new, dim=1)).unsqueeze(1)
        merged[f"{prefix}weight"] = new.to(weight.dtype)
    orphans = [k for k in merged if _is_adapter_key(k)]
    if orphans:
        raise KeyError(f"Adapter entries without a matching lora_a weight: {orphans}")
    return merged
