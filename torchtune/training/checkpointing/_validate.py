"""Check a state dict against a model before ``load_state_dict``, with errors that say what is wrong."""

from typing import Callable, Dict, Optional

import torch
from torch import nn

_SHOWN = 5  # keys listed per category before "... and N more"


def _listing(keys) -> str:
    keys = sorted(keys)
    more = f" ... and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more


def validate_state_dict(
    model: nn.Module,
    state_dict: Dict[str, torch.Tensor],
    *,
    ignore_missing: Optional[Callable[[str], bool]] = None,
    source: Optional[str] = None,
) -> None:
    """Raise if ``state_dict`` does not fit ``model`` exactly.

    Compares against ``model.state_dict()`` (parameters and persistent buffers): keys missing
    from the checkpoint, keys the model does not have, and shape mismatches, all reported together.

    Args:
        model (nn.Module): the model about to receive the weights.
        state_dict (Dict[str, torch.Tensor]): weights in the model's own key layout.
        ignore_missing (Optional[Callable[[str], bool]]): keys for which it returns True may be
            absent, e.g. ``lambda k: "lora_" in k or k.endswith(".magnitude")`` when loading base
            weights into a LoRA model. Default None (every key is required).
        source (Optional[str]): where the state dict came from (a path), quoted in the error.

    Raises:
        ValueError: naming missing keys, unexpected keys, and each mismatched parameter with the
            checkpoint's shape and the model's shape.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict and not (ignore_missing and ignore_missing(k))]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k}: checkpoint has shape {list(state_dict[k].shape)}, model expects {list(expected[k].shape)}"
        for k in expected
        if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if mismatched:
        problems.append("shape mismatch: " + "; ".join(mismatched[:_SHOWN]))
        if len(mismatched) > _SHOWN:
            problems[-1] += f" ... and {len(mismatched) - _SHOWN} more"
    if problems:
        where = f" from {source}" if source else ""
        raise ValueError(f"Checkpoint{where} does not match the model: " + " | ".join(problems))
