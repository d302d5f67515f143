import math
from typing import List, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from torchtune.modules.low_precision._nf4 import (
    check_quantization_kwargs,
    linear_nf4,
    register_nf4_state_dict_hooks,
    to_nf4,
)


class LoRALinear(nn.Module):
    """Linear layer with a trainable low-rank update (LoRA, Hu et al., 2021).

    ``y = x W^T (+ b) + (alpha / rank) * B(A(dropout(x)))``, where ``W`` (``weight``) and ``b``
    (``bias``) are the frozen base layer, ``A`` (``lora_a``, ``[rank, in_dim]``) starts
    Kaiming-uniform and ``B`` (``lora_b``, ``[out_dim, rank]``) starts at zero, so a fresh layer
    computes exactly the base layer. The update is applied as two thin matmuls; ``B @ A`` is
    never formed, and the base weight is used in its own dtype (no copy per step).

    With ``quantize_base=True`` the base weight is stored in NF4 (QLoRA, Dettmers et al., 2023)
    and dequantized to the input dtype inside the matmul. ``load_state_dict`` quantizes a
    dense incoming ``weight`` and ``state_dict()`` returns it dense (original dtype, CPU).
    Build QLoRA models in bf16; do not call ``model.to(dtype)`` afterwards, as that would
    replace the NF4 weights with dense ones.

    Args:
        in_dim (int): input features.
        out_dim (int): output features.
        rank (int): rank of the update.
        alpha (float): scale numerator; the update is multiplied by ``alpha / rank``.
        dropout (float): dropout on the adapter's input. Default 0.0.
        use_bias (bool): whether the base layer has a (frozen) bias. Default False.
        quantize_base (bool): store the base weight in NF4. Default False.
        **quantization_kwargs: NF4 settings used with ``quantize_base``, here and when a dense
            weight is loaded: ``block_size`` (default 64) and ``scaler_block_size``.

    Raises:
        ValueError: if ``rank`` is not positive, ``dropout`` is outside ``[0, 1)``, or
            ``quantization_kwargs`` are given without ``quantize_base``.
        TypeError: on a quantization keyword argument NF4 does not take.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        rank: int,
        alpha: float,
        dropout: float = 0.0,
        use_bias: bool = False,
        quantize_base: bool = False,
        **quantization_kwargs,
    ) -> None:
        super().__init__()
        if quantization_kwargs and not quantize_base:
            raise ValueError(
                f"{type(self).__name__}: quantization_kwargs {sorted(quantization_kwargs)} need quantize_base=True"
            )
        self._nf4_kwargs = check_quantization_kwargs(quantization_kwargs, type(self).__name__)
        if rank <= 0:
            raise ValueError(f"LoRA rank must be positive, got {rank}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {dropout}")
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.rank = rank
        self.alpha = alpha
        self.scaling = alpha / rank
        self.use_bias = use_bias
        self._quantize_base = quantize_base
        self.disabled = False

        base = nn.Linear(in_dim, out_dim, bias=use_bias)
        weight = to_nf4(base.weight, **self._nf4_kwargs) if quantize_base else base.weight.detach()
        # The base is frozen by construction when quantized (NF4 has no gradient); dense base
        # weights are frozen by `set_trainable_params`, like every other base parameter.
        self.weight = nn.Parameter(weight, requires_grad=not quantize_base)
        self.bias = nn.Parameter(base.bias.detach()) if use_bias else None
        if quantize_base:
            register_nf4_state_dict_hooks(self)

        self.dropout = nn.Dropout(p=dropout) if dropout > 0.0 else nn.Identity()
        self.lora_a = nn.Linear(in_dim, rank, bias=False)
        self.lora_b = nn.Linear(rank, out_dim, bias=False)
        self.initialize_parameters()

    def initialize_parameters(self) -> None:
        """(Re)initialise the adapter: ``lora_a`` Kaiming-uniform, ``lora_b`` zeros.

        Call after ``to_empty()`` when the model was built on the meta device.
        """
        nn.init.kaiming_uniform_(self.lora_a.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_b.weight)

    def adapter_params(self) -> List[str]:
        """Names of the trainable adapter parameters, relative to this module."""
        return ["lora_a.weight", "lora_b.weight"]

    def to_empty(self, *, device: Union[str, torch.device, int, None], recurse: bool = True):
        """Allocate the adapter's parameters on ``device``, uninitialised; the base is left alone.

        For models built on the meta device: the base ``weight``/``bias`` come from the checkpoint
        (loaded with ``assign=True``), while the adapter, absent from a base checkpoint, needs
        storage before ``initialize_parameters()`` fills it.

        Args:
            device (Union[str, torch.device, int, None]): where to allocate.
            recurse (bool): passed to the adapter sub-modules' ``to_empty``. Default True.

        Returns:
            LoRALinear: this module.
        """
        self.lora_a.to_empty(device=device, recurse=recurse)
        self.lora_b.to_empty(device=device, recurse=recurse)
        return self

    def _base_linear(self, x: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        """The frozen base layer ``x W^T (+ bias)``, ``[..., in_dim] -> [..., out_dim]``."""
        if not self._quantize_base:
            return F.linear(x, self.weight, bias)
        out = linear_nf4(x, self.weight)
        return out if bias is None else out + bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x (torch.Tensor): ``[..., in_dim]``.

        Returns:
            torch.Tensor: ``[..., out_dim]``; the base output alone while ``disabled``.
        """
        out = self._base_linear(x, self.bias)
        if self.disabled:
            return out
        # The scale is applied to the thin [..., rank] activations, and the update is accumulated
        # into the base output by the second matmul itself (addmm, beta=1): no [..., out_dim]
        # temporaries for the product, the scaling or the sum, forward or backward.
        a = self.lora_a(self.dropout(x)) * self.scaling  # [..., rank]
        update = torch.addmm(out.reshape(-1, self.out_dim), a.reshape(-1, self.rank), self.lora_b.weight.t())
        return update.view(out.shape)

    def extra_repr(self) -> str:
        return (
            f"in_dim={self.in_dim}, out_dim={self.out_dim}, rank={self.rank}, alpha={self.alpha}, "
            f"use_bias={self.use_bias}, quantize_base={self._quantize_base}"
        )
