"""Loading a full state dict into a model with errors that say what does not match."""
from typing import Any, Dict, Optional

from torch import nn

from torchtune.training.checkpointing import validate_state_dict


def load_model_state_dict(
    model: nn.Module, state_dict: Dict[str, Any], strict: bool = True, source: Optional[str] = None
) -> None:
    """``model.load_state_dict`` that first checks the whole state dict and reports every problem.

    Args:
        model (nn.Module): the model (activation-checkpoint wrappers are transparent).
        state_dict (Dict[str, Any]): weights in the model's key layout.
        strict (bool): raise on missing or unexpected keys and shape mismatches. Default True.
        source (Optional[str]): where the weights came from, quoted in the error.

    Raises:
        ValueError: with ``strict``, naming missing and unexpected keys and each mismatched
            parameter with both shapes (see ``validate_state_dict``).
    """
    if strict:
        validate_state_dict(model, state_dict, source=source)
    model.load_state_dict(state_dict, strict=strict)
