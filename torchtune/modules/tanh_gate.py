import torch
from torch import nn


class TanhGate(nn.Module):
    """Learnable gate ``tanh(scale) * x`` with a scalar ``scale`` that starts at 0.

    A branch added to a pretrained model behind this gate contributes nothing until training opens
    the gate, so the model starts out computing exactly what it did before.
    """

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x (torch.Tensor): any shape.

        Returns:
            torch.Tensor: ``x`` scaled by ``tanh(scale)``, same shape.
        """
        return x * self.scale.tanh()
