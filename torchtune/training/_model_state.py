"""Loading a full state dict into a model with errors that say what does not match."""
from typing import Any, Dict

from torch import nn


def load_model_state_dict(model: nn.Module, state_dict: Dict[str, Any], strict: bool = True) -> None:
    """``model.load_state_dict`` that reports missing and unexpected keys readably.

    Args:
        model (nn.Module): the model (activation-checkpoint wrappers are transparent).
        state_dict (Dict[str, Any]): weights in the model's key layout.
        strict (bool): raise on missing or unexpected keys. Default True.

    Raises:
        ValueError: with ``strict``, listing (up to 10 of) the missing and unexpected keys.
        RuntimeError: from torch when a tensor's shape does not match its parameter.
    """
    result = model.load_state_dict(state_dict, strict=False)
    if strict and (result.missing_keys or result.unexpected_keys):
        raise ValueError(
            f"Checkpoint does not match {type(model).__name__}: "
            f"{len(result.missing_keys)} missing keys {_head(result.missing_keys)}, "
            f"{len(result.unexpected_keys)} unexpected keys {_head(result.unexpected_keys)}. "
            "Check that the model builder matches the checkpoint (size, vocabulary, model_type)"
        )


def _head(keys: list, n: int = 10) -> str:
    return str(keys[:n])[:-1] + (", ...]" if len(keys) > n else "]")
