from typing import Optional

import torch
from torch import nn

from torchtune.modules.low_precision._nf4 import linear_nf4, register_nf4_state_dict_hooks, to_nf4


class FrozenNF4Linear(nn.Linear):
    """A frozen linear layer whose weight is stored in NF4 (4 bits per weight).

    QLoRA builders use it for the base-model projections that get no adapter, so they shrink
    to about a quarter of their bf16 size too. The weight is dequantized to the input dtype
    inside the matmul. ``load_state_dict`` quantizes dense weights on the way in and
    ``state_dict()`` returns the weight dense (original dtype, CPU), so checkpoints keep the
    ordinary layout.

    Args:
        in_dim (int): input features.
        out_dim (int): output features.
        bias (bool): add a frozen dense bias. Default False.
        device (Optional[torch.device]): where to create the weight.
        dtype (Optional[torch.dtype]): dtype the NF4 weight dequantizes to by default
            (the default dtype if None); use bf16 for QLoRA training.

    Raises:
        ValueError: if ``in_dim * out_dim`` is not a multiple of 64 (NF4 block size).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        bias: bool = False,
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__(in_dim, out_dim, bias=bias, device=device, dtype=dtype)
        self.weight = nn.Parameter(to_nf4(self.weight), requires_grad=False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        register_nf4_state_dict_hooks(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x (torch.Tensor): ``[..., in_dim]``.

        Returns:
            torch.Tensor: ``[..., out_dim]`` in ``x.dtype``.
        """
        out = linear_nf4(x, self.weight)
        return out if self.bias is None else out + self.bias
