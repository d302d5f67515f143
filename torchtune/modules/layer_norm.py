from typing import Any

import torch
from torch import nn


class Fp32LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` computed in fp32, returned in the input's dtype.

    Normalising bf16 activations in bf16 loses precision in the mean and variance; this layer upcasts
    the input (and its weight and bias) for the computation only.

    Args:
        *args (Any): ``nn.LayerNorm``'s positional arguments (``normalized_shape``, ``eps``, ...).
        **kwargs (Any): ``nn.LayerNorm``'s keyword arguments.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x (torch.Tensor): ``[..., normalized_shape]``.

        Returns:
            torch.Tensor: the normalised ``x``, same shape and dtype.
        """
        out = nn.functional.layer_norm(
            x.float(),
            self.normalized_shape,
            self.weight.float() if self.weight is not None else None,
            self.bias.float() if self.bias is not None else None,
            self.eps,
        )
        return out.type_as(x)
