"""Interfaces of the losses recipes plug in."""
from abc import ABC, abstractmethod
from typing import Optional

import torch
from torch import nn


class SFTLoss(ABC):
    """A supervised fine-tuning loss that may take over the model's output projection.

    Recipes call ``loss.set_model_output(model)`` once after building both; such a loss then
    receives what the model returns (hidden states, when it applies the projection itself) and the
    shifted labels.
    """

    @abstractmethod
    def set_model_output(self, model: nn.Module) -> None:
        """Adapt to ``model`` (e.g. take its output projection and make it return hidden states)."""

    @abstractmethod
    def forward(
        self, outputs: torch.Tensor, targets: torch.Tensor, reduction: Optional[str] = None
    ) -> torch.Tensor:
        """Loss of ``outputs`` against ``targets`` ``[b, s]``."""
