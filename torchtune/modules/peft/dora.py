from typing import List, Union

import torch

from torchtune.modules.low_precision._nf4 import dequantize
from torchtune.modules.peft.lora import LoRALinear


class DoRALinear(LoRALinear):
    """LoRA with the weight split into magnitude and direction (DoRA, Liu et al., 2024).

    The adapted weight is ``W' = m * (W + s B A) / ||W + s B A||_row`` with ``s = alpha / rank``
    and a trainable per-output magnitude ``m`` (``magnitude``, ``[out_dim]``), so the layer computes
    ``y = (m / ||W + s B A||_row) * (x W^T + s B(A(dropout(x)))) (+ b)``. As in the paper
    (section 4.3), the row norm is treated as a constant in backward, which keeps its
    ``[out_dim, in_dim]`` temporary out of the autograd graph.

    ``magnitude`` must equal the base weight's row norms for a fresh layer to compute the base
    layer. It is set from the randomly initialised weight at construction; after loading the
    real base weights call :meth:`initialize_dora_magnitude` (or
    :func:`~torchtune.modules.peft.load_dora_magnitudes` on the whole model). Do not call it
    after loading trained DoRA weights: it would reset the trained magnitude.

    Args:
        in_dim (int): input features.
        out_dim (int): output features.
        rank (int): rank of the update.
        alpha (float): scale numerator; the update is multiplied by ``alpha / rank``.
        dropout (float): dropout on the adapter's input. Default 0.0.
        use_bias (bool): whether the base layer has a (frozen) bias. Default False.
        quantize_base (bool): store the base weight in NF4. Default False.
        **quantization_kwargs: NF4 settings used with ``quantize_base`` (see ``LoRALinear``).

    Raises:
        ValueError: if ``rank`` is not positive or ``dropout`` is outside ``[0, 1)``.
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
        super().__init__(in_dim, out_dim, rank, alpha, dropout, use_bias, quantize_base, **quantization_kwargs)
        dtype = self.lora_a.weight.dtype
        self.magnitude = torch.nn.Parameter(torch.empty(out_dim, dtype=dtype))
        self.initialize_dora_magnitude()

    @torch.no_grad()
    def _adapted_row_norm(self) -> torch.Tensor:
        """``||W + s B A||`` of every output row, ``[out_dim]``, without gradient."""
        weight = dequantize(self.weight).to(self.lora_b.weight.dtype)
        delta = self.lora_b.weight @ self.lora_a.weight  # [out_dim, in_dim]
        return torch.linalg.vector_norm(weight + self.scaling * delta, dim=1)

    @torch.no_grad()
    def initialize_dora_magnitude(self) -> None:
        """Set ``magnitude`` to the row norms of the current ``W + s B A``.

        Idempotent: calling it again with unchanged weights gives the same magnitude. Call it
        after the base weights are loaded and before training starts.
        """
        self.magnitude.copy_(self._adapted_row_norm())

    def adapter_params(self) -> List[str]:
        """Names of the trainable adapter parameters, relative to this module."""
        return ["lora_a.weight", "lora_b.weight", "magnitude"]

    def to_empty(self, *, device: Union[str, torch.device, int, None], recurse: bool = True):
        """Allocate ``lora_a``, ``lora_b`` and ``magnitude`` on ``device``, uninitialised.

        The base weight is left alone (see ``LoRALinear.to_empty``). After the base weights are
        loaded, fill the adapter with ``initialize_parameters()`` and ``initialize_dora_magnitude()``.

        Args:
            device (Union[str, torch.device, int, None]): where to allocate.
            recurse (bool): passed to the adapter sub-modules' ``to_empty``. Default True.

        Returns:
            DoRALinear: this module.
        """
        super().to_empty(device=device, recurse=recurse)
        magnitude = torch.nn.Parameter(
            torch.empty_like(self.magnitude, device=device), requires_grad=self.magnitude.requires_grad
        )
        torch.utils.swap_tensors(self.magnitude, magnitude)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x (torch.Tensor): ``[..., in_dim]``.

        Returns:
            torch.Tensor: ``[..., out_dim]``; the base output alone while ``disabled``.
        """
        if self.disabled:
            return self._base_linear(x, self.bias)
        base = self._base_linear(x, None)
        lora = self.lora_b(self.lora_a(self.dropout(x)))
        scale = (self.magnitude / self._adapted_row_norm()).to(x.dtype)  # [out_dim]
        out = scale * (base + self.scaling * lora)
        return out if self.bias is None else out + self.bias
