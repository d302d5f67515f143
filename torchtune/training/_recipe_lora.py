"""What the LoRA recipes add to full fine-tuning: loading adapters, and the adapter part of a checkpoint."""

from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import torch
from omegaconf import DictConfig

from torchtune.modules.peft import (
    get_adapter_state_dict,
    get_lora_module_names,
    get_merged_lora_ckpt,
    load_dora_magnitudes,
    validate_missing_and_unexpected_for_lora,
)
from torchtune.training.checkpointing._constants import ADAPTER_CONFIG, ADAPTER_KEY, MODEL_KEY

StateDict = Mapping[str, Any]
LoadFn = Callable[[StateDict], Tuple[Any, Any]]


def load_lora_weights(
    model: torch.nn.Module,
    load: LoadFn,
    cfg_model: DictConfig,
    *,
    base_state_dict: StateDict,
    adapter_state_dict: Optional[StateDict],
    fresh_adapters: Optional[StateDict],
) -> None:
    """Load base weights, then the resumed or the freshly drawn adapters, and check the keys.

    Fresh DoRA magnitudes start from the loaded base weights' row norms.

    Args:
        model (torch.nn.Module): the model with adapters.
        load (LoadFn): ``state_dict -> (missing, unexpected)``, non-strict (the plain
            ``model.load_state_dict(..., strict=False)``, or the sharded loader).
        cfg_model (DictConfig): the ``model`` config (``lora_attn_modules``, ``apply_lora_to_mlp``,
            ``apply_lora_to_output``).
        base_state_dict (StateDict): the base model weights.
        adapter_state_dict (Optional[StateDict]): adapter weights of a resumed run, or None.
        fresh_adapters (Optional[StateDict]): initial adapters, used when ``adapter_state_dict``
            is None.

    Raises:
        RuntimeError: from ``validate_missing_and_unexpected_for_lora`` on missing or unexpected keys.
    """
    base_missing, base_unexpected = load(base_state_dict)
    lora_missing, lora_unexpected = None, None
    if adapter_state_dict is not None:
        lora_missing, lora_unexpected = load(adapter_state_dict)
    else:
        load(fresh_adapters)
        load_dora_magnitudes(model)
    validate_missing_and_unexpected_for_lora(
        lora_attn_modules=list(cfg_model.lora_attn_modules),
        apply_lora_to_mlp=cfg_model.get("apply_lora_to_mlp", False),
        apply_lora_to_output=cfg_model.get("apply_lora_to_output", False),
        base_missing=base_missing,
        base_unexpected=base_unexpected,
        lora_missing=lora_missing,
        lora_unexpected=lora_unexpected,
    )


def lora_checkpoint_state(
    model_state_dict: Dict[str, torch.Tensor], cfg_model: DictConfig, *, adapter_only: bool = False
) -> Dict[str, Any]:
    """The weights part of a LoRA checkpoint: adapter, its PEFT config, and the merged model.

    Args:
        model_state_dict (Dict[str, torch.Tensor]): the full (CPU) state dict of the model with adapters.
        cfg_model (DictConfig): the ``model`` config (``lora_rank``, ``lora_alpha``,
            ``lora_attn_modules``, ``apply_lora_to_mlp``, ``apply_lora_to_output``, ``use_dora``).
        adapter_only (bool): leave out the merged weights. Default False.

    Returns:
        Dict[str, Any]: ``ADAPTER_KEY`` and ``ADAPTER_CONFIG``, and ``MODEL_KEY`` (base with the
        adapters merged in) unless ``adapter_only``.
    """
    rank, alpha = cfg_model.lora_rank, cfg_model.lora_alpha
    state: Dict[str, Any] = {ADAPTER_KEY: get_adapter_state_dict(model_state_dict)}
    state[ADAPTER_CONFIG] = {
        "r": rank,
        "lora_alpha": alpha,
        "target_modules": get_lora_module_names(
            list(cfg_model.lora_attn_modules),
            cfg_model.get("apply_lora_to_mlp", False),
            cfg_model.get("apply_lora_to_output", False),
        ),
        "peft_type": "LORA",
        "use_dora": cfg_model.get("use_dora", False),
    }
    if not adapter_only:
        state[MODEL_KEY] = get_merged_lora_ckpt(model_state_dict, rank=rank, alpha=alpha)
    return state
