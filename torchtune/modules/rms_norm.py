import torch
from torch import nn


class RMSNorm(nn.Module):
    """Root-mean-square layer norm (Zhang & Sennrich, 2019), computed in fp32.

    Args:
        dim (int): size of the last dimension to normalise.
        eps (float): added to the mean square for stability. Default 1e-6.
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.normalized_shape = (dim,)
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x (torch.Tensor): input of shape ``[..., dim]``.

        Returns:
            torch.Tensor: normalised and scaled tensor, same shape and dtype as ``x``.
        """
        # Normalising in fp32 keeps bf16 training stable; rms_norm fuses the kernel.
        out = nn.functional.rms_norm(x.float(), self.normalized_shape, self.scale.float(), self.eps)
        return out.to(x.dtype)
