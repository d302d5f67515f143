"""Turning dropout off for methods that need deterministic forward passes (e.g. preference optimisation)."""
from torch import nn

from torchtune.utils._logging import get_logger

_log = get_logger()


def disable_dropout(model: nn.Module) -> None:
    """Set the probability of every ``nn.Dropout`` in ``model`` to 0, in place.

    A warning names each dropout module that had a non-zero probability, so a config asking for
    dropout does not lose it silently.

    Args:
        model (nn.Module): the model.
    """
    for name, module in model.named_modules():
        if isinstance(module, nn.Dropout) and module.p != 0:
            _log.warning(f"Disabling dropout {name or type(model).__name__} (p={module.p}) for this recipe")
            module.p = 0.0
