from typing import Optional

import torch
from torch import nn

from torchtune.modules.low_precision._nf4 import (
    check_quantization_kwargs,
    linear_nf4,
    register_nf4_state_dict_hooks,
    to_nf4,
)


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
        **quantization_kwargs: passed to ``to_nf4`` here and when a dense weight is loaded:
            ``block_size`` (default 64) and ``scaler_block_size`` (default 256, or smaller for
            small layers).

    Raises:
        ValueError: if ``in_dim * out_dim`` is not a multiple of the NF4 block size.
        TypeError: on a quantization keyword argument NF4 does not take.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        bias: bool = False,
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
        **quantization_kwargs,
    ) -> None:
        self._nf4_kwargs = check_quantization_kwargs(quantization_kwargs, type(self).__name__)
        super().__init__(in_dim, out_dim, bias=bias, device=device, dtype=dtype)
        self.weight = nn.Parameter(to_nf4(self.weight, **self._nf4_kwargs), requires_grad=False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        register_nf4_state_dict_hooks(self)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """
        Args:
            input (torch.Tensor): ``[..., in_dim]``.

        Returns:
            torch.Tensor: ``[..., out_dim]`` in ``input.dtype``.
        """
        out = linear_nf4(input, self.weight)
        return out if self.bias is None else out + self.bias
