"""Any Hugging Face decoder whose blocks we have, built from its ``config.json`` (``docs/hf_models.md``).

``hf_decoder(path)`` builds the model; the checkpointer's ``HF_DECODER`` model type converts
its weights with :func:`hf_to_tune` / :func:`tune_to_hf`, which read the same architecture table.
"""

from typing import Any, Dict, Mapping

import torch

from torchtune.models._hf_decoder._architectures import ARCHITECTURES, architecture_of, REFUSED
from torchtune.models._hf_decoder._builder import hf_decoder, lora_hf_decoder, qlora_hf_decoder
from torchtune.models._hf_decoder._config import HFConfig, load_hf_config, UnsupportedConfigError
from torchtune.models._hf_decoder._names import from_tune, hf_module_of, to_tune, with_base_prefix
from torchtune.models._hf_decoder._rope import HFRotaryEmbeddings, rope_frequencies, RopeSpec
from torchtune.models._hf_decoder._tokenizer import hf_tokenizer, HFModelTokenizer


def _as_config(config: Mapping[str, Any]) -> HFConfig:
    return config if isinstance(config, HFConfig) else HFConfig(dict(config))


def hf_to_tune(state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> Dict[str, torch.Tensor]:
    """Hugging Face parameter names of ``config``'s architecture -> ours.

    Args:
        state_dict (Mapping[str, torch.Tensor]): a checkpoint (or one shard of it).
        config (Mapping[str, Any]): the parsed ``config.json``.

    Returns:
        Dict[str, torch.Tensor]: the same tensors (split where theirs are fused) under our names.

    Raises:
        ValueError: for an unsupported architecture or a parameter its rules do not name.
    """
    config = _as_config(config)
    arch = architecture_of(config)
    rules = arch.rules(config)
    if arch.base_prefix:
        state_dict = with_base_prefix(state_dict, rules, arch.base_prefix)
    return to_tune(state_dict, rules, config)


def tune_to_hf(state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> Dict[str, torch.Tensor]:
    """Our parameter names -> Hugging Face's for ``config``'s architecture (inverse of :func:`hf_to_tune`).

    Raises:
        ValueError: for an unsupported architecture or a parameter without a Hugging Face name.
    """
    config = _as_config(config)
    return from_tune(state_dict, architecture_of(config).rules(config), config)


def hf_module_name(tune_module: str, config: Mapping[str, Any]) -> str:
    """Hugging Face module path of one of our modules (``layers.0.attn.q_proj``), for PEFT adapters.

    Raises:
        ValueError: if the module has no one-to-one Hugging Face twin (it is part of a fused one).
    """
    config = _as_config(config)
    name = hf_module_of(tune_module, architecture_of(config).rules(config))
    if name is None:
        raise ValueError(f"{tune_module} has no one-to-one module in {config.get('model_type')} checkpoints")
    return name


__all__ = [
    "ARCHITECTURES", "HFConfig", "HFModelTokenizer", "HFRotaryEmbeddings", "REFUSED", "RopeSpec", "UnsupportedConfigError",
    "architecture_of", "hf_decoder", "hf_module_name", "hf_to_tune", "hf_tokenizer", "load_hf_config", "lora_hf_decoder",
    "qlora_hf_decoder", "rope_frequencies", "tune_to_hf",
]
