from typing import Optional

import torch
from torch import nn


class FeedForward(nn.Module):
    """Gated MLP: ``down_proj(activation(gate_proj(x)) * up_proj(x))``.

    Without ``up_proj`` it is a plain two-layer MLP ``down_proj(activation(gate_proj(x)))``.
    The projections are stored as ``w1`` (gate), ``w2`` (down) and ``w3`` (up), the names
    used by torchtune and Meta checkpoints.

    Args:
        gate_proj (nn.Module): ``[..., dim] -> [..., hidden_dim]``.
        down_proj (nn.Module): ``[..., hidden_dim] -> [..., dim]``.
        up_proj (Optional[nn.Module]): ``[..., dim] -> [..., hidden_dim]``; None for an ungated MLP.
        activation (nn.Module): non-linearity applied to the gate. Default ``nn.SiLU()``.
    """

    def __init__(
        self,
        *,
        gate_proj: nn.Module,
        down_proj: nn.Module,
        up_proj: Optional[nn.Module] = None,
        activation: nn.Module = nn.SiLU(),
    ) -> None:
        super().__init__()
        self.w1 = gate_proj
        self.w2 = down_proj
        self.w3 = up_proj
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x (torch.Tensor): ``[b, s, dim]``.

        Returns:
            torch.Tensor: ``[b, s, dim]``.
        """
        h = self.activation(self.w1(x))
        if self.w3 is not None:
            h = h * self.w3(x)
        return self.w2(h)
