import torch
from torch import nn


class GemmaRMSNorm(nn.Module):
    """RMSNorm with a ``(1 + w)`` gain, computed in fp32 (Gemma, Gemma 2 and Gemma 3).

    Gemma checkpoints store ``w`` with zero meaning "no scaling", so ``scale`` starts at zero and
    the output is ``x / rms(x) * (1 + scale)``. The gain is applied before casting back to the
    input dtype, as the reference implementation does.

    Args:
        dim (int): size of the last dimension to normalise.
        eps (float): added to the mean square for stability. Default 1e-6.
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.normalized_shape = (dim,)
        self.eps = eps
        self.scale = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x (torch.Tensor): input of shape ``[..., dim]``.

        Returns:
            torch.Tensor: normalised and scaled tensor, same shape and dtype as ``x``.
        """
        out = nn.functional.rms_norm(x.float(), self.normalized_shape, eps=self.eps)
        return (out * (1.0 + self.scale.float())).to(x.dtype)
