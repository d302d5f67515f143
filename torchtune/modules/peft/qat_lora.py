"""LoRA with fake quantization of the merged weight, for quantization-aware LoRA fine-tuning."""

from typing import Optional

import torch
import torch.nn.functional as F
from torchao.quantization.qat import FakeQuantizeConfig
from torchao.quantization.qat.fake_quantizer import FakeQuantizerBase

from torchtune.modules.peft.lora import LoRALinear


class QATLoRALinear(LoRALinear):
    """A :class:`LoRALinear` that trains against the numerics of its quantized, merged deployment.

    After LoRA fine-tuning the adapter is merged into the base weight and the merged weight is
    quantized. This layer simulates exactly that in every forward::

        y = F.linear(fq_act(x), fq_w(W + (alpha / rank) * B @ A)) (+ bias)

    where ``fq_act`` / ``fq_w`` are torchao fake quantizers (quantize then dequantize, with a
    straight-through gradient), so the adapter learns to compensate for the quantization error
    of the weight that will actually ship. Fake-quantizing the frozen base alone and adding a
    full-precision adapter on top (torchtune v0.6.1's layer) trains a function that differs from
    the merged-then-quantized one. The ``[out_dim, in_dim]`` merged weight is formed once per
    forward (``out_dim * in_dim * rank`` multiply-adds, small next to the tokens' matmuls).

    Because the adapter is folded into the weight, adapter dropout cannot be applied: ``dropout``
    must be 0. Fake quantization is switched off and on with
    ``torchtune.training.quantization.set_fake_quantize_enabled``; while disabled (or while
    ``disabled`` is set by ``disable_adapter``) the layer computes a plain LoRA linear.

    Args:
        in_dim (int): input features.
        out_dim (int): output features.
        rank (int): rank of the update.
        alpha (float): the update is scaled by ``alpha / rank``.
        dropout (float): must be 0.0 (see above). Default 0.0.
        activation_qat_config (Optional[FakeQuantizeConfig]): fake quantization of the input
            activations (e.g. int8 per token); None for none. Default None.
        weight_qat_config (Optional[FakeQuantizeConfig]): fake quantization of the merged weight
            (e.g. int4 per group); None for none. Default None.
        use_bias (bool): the base layer has a (frozen) bias, added after the matmul. Default False.

    Raises:
        ValueError: if ``dropout`` is not 0, or ``in_dim`` is not a multiple of the weight's group size.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        rank: int,
        alpha: float,
        dropout: float = 0.0,
        activation_qat_config: Optional[FakeQuantizeConfig] = None,
        weight_qat_config: Optional[FakeQuantizeConfig] = None,
        *,
        use_bias: bool = False,
    ) -> None:
        if dropout != 0.0:
            raise ValueError(
                f"QATLoRALinear fake-quantizes the merged weight, which adapter dropout would not match; "
                f"set lora_dropout=0.0 (got {dropout})"
            )
        super().__init__(in_dim, out_dim, rank=rank, alpha=alpha, dropout=0.0, use_bias=use_bias)
        group_size = getattr(weight_qat_config, "group_size", None)
        if group_size is not None and in_dim % group_size != 0:
            raise ValueError(f"QATLoRALinear: in_dim={in_dim} is not a multiple of the weight group size {group_size}")
        self.activation_fake_quantizer = (
            FakeQuantizerBase.from_config(activation_qat_config) if activation_qat_config is not None else None
        )
        self.weight_fake_quantizer = (
            FakeQuantizerBase.from_config(weight_qat_config) if weight_qat_config is not None else None
        )

    @classmethod
    def from_lora_linear(
        cls,
        lora_linear: LoRALinear,
        activation_qat_config: Optional[FakeQuantizeConfig] = None,
        weight_qat_config: Optional[FakeQuantizeConfig] = None,
    ) -> "QATLoRALinear":
        """A QAT layer sharing the parameters of ``lora_linear`` (which must not be QLoRA).

        Args:
            lora_linear (LoRALinear): the layer to convert; its ``weight``, ``bias``, ``lora_a``
                and ``lora_b`` are reused (not copied), so optimizer and sharding state stay valid.
            activation_qat_config (Optional[FakeQuantizeConfig]): see the class. Default None.
            weight_qat_config (Optional[FakeQuantizeConfig]): see the class. Default None.

        Returns:
            QATLoRALinear

        Raises:
            ValueError: for an NF4 (QLoRA) base, or adapter dropout.
        """
        if lora_linear._quantize_base:
            raise ValueError("QATLoRALinear needs a dense base weight; QLoRA (NF4) layers cannot be fake-quantized")
        dropout = lora_linear.dropout.p if isinstance(lora_linear.dropout, torch.nn.Dropout) else 0.0
        with torch.device("meta"):
            new = cls(lora_linear.in_dim, lora_linear.out_dim, rank=lora_linear.rank, alpha=lora_linear.alpha,
                      dropout=dropout, activation_qat_config=activation_qat_config,
                      weight_qat_config=weight_qat_config, use_bias=lora_linear.use_bias)
        new.weight, new.bias = lora_linear.weight, lora_linear.bias
        new.lora_a, new.lora_b = lora_linear.lora_a, lora_linear.lora_b
        new.disabled = lora_linear.disabled
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x (torch.Tensor): ``[..., in_dim]``.

        Returns:
            torch.Tensor: ``[..., out_dim]``.
        """
        weight = self.weight
        if not self.disabled:
            weight = weight + self.scaling * (self.lora_b.weight @ self.lora_a.weight)  # [out_dim, in_dim]
        if self.weight_fake_quantizer is not None:
            weight = self.weight_fake_quantizer(weight)
        if self.activation_fake_quantizer is not None:
            x = self.activation_fake_quantizer(x)
        return F.linear(x, weight, self.bias)
