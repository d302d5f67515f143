"""Cross-entropy that applies the output projection itself, chunk by chunk."""
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from torchtune.modules.loss._chunked import check_reduction, reduce_sum, sum_over_chunks
from torchtune.modules.loss._fused_linear_ce import linear_cross_entropy
from torchtune.modules.loss.loss_types import SFTLoss
from torchtune.modules.tied_linear import TiedLinear


class LinearCrossEntropyLoss(nn.Module, SFTLoss):
    """Output projection fused with cross-entropy, so full-sequence logits never exist.

    The model returns its final hidden states ``[b, s, d]`` instead of logits (``set_model_output``
    sets ``model.skip_output_layer = True``). The tokens are flattened (ignored positions dropped,
    see ``mask_ignored_tokens``) and split into chunks of hidden states; each chunk is projected to
    ``[n, v]`` logits, upcast to fp32 and reduced. Peak memory for the loss is one chunk's logits
    instead of the whole ``[b, s, v]``. The output weight is used whole (never sliced or expanded),
    so no copy of it is made.

    When the projection is a plain bias-free ``nn.Linear`` or a ``TiedLinear`` (the usual case),
    projection and loss run as one autograd node that computes the gradients of each chunk as soon
    as its logits exist (``softmax - onehot`` times the weight) and keeps only those: two
    vocabulary-sized matmuls per chunk instead of three, nothing recomputed. Any other projection
    (LoRA on the output, NF4, sharded DTensor weights, modules with hooks) is called as a module and
    its chunks are recomputed in backward under activation checkpointing.

    Reductions are the same as ``CEWithChunkedOutputLoss``: ``"mean"`` divides the summed token
    loss by the number of trained tokens, ``"sum"`` leaves that to ``GradientAccumulator``.

    Args:
        num_output_chunks (int): chunks of tokens (when ``chunk_size`` is None). Default 8.
        ignore_index (int): label of untrained positions. Default -100.
        mask_ignored_tokens (bool): drop the hidden states of ignored positions before projecting
            them (saves the projection of prompt and padding tokens; costs one host sync).
            Default True.
        reduction (str): default reduction, ``"mean"`` or ``"sum"``. Default ``"mean"``.
        chunk_size (Optional[int]): tokens per chunk instead of ``num_output_chunks`` equal chunks.
            Bounds the loss's memory to about ``10 * chunk_size * vocab`` bytes whatever the batch,
            and keeps matmuls large enough to run efficiently. Default None.

    Raises:
        ValueError: for a non-positive ``num_output_chunks`` or ``chunk_size``, or an unknown reduction.
    """

    def __init__(
        self,
        num_output_chunks: int = 8,
        ignore_index: int = -100,
        mask_ignored_tokens: bool = True,
        reduction: str = "mean",
        chunk_size: Optional[int] = None,
    ) -> None:
        super().__init__()
        if num_output_chunks < 1:
            raise ValueError(f"num_output_chunks must be >= 1, got {num_output_chunks}")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1 or None, got {chunk_size}")
        self.chunk_size = chunk_size
        self.num_output_chunks = num_output_chunks
        self.ignore_index = ignore_index
        self.mask_ignored_tokens = mask_ignored_tokens
        self.reduction = check_reduction(reduction)
        self.linear_projection: Optional[Callable[[torch.Tensor], torch.Tensor]] = None

    def set_model_output(self, model: nn.Module) -> None:
        """Take ``model.output`` as the projection and make the model return hidden states.

        Args:
            model (nn.Module): a ``TransformerDecoder`` (anything with ``output`` and honouring
                ``skip_output_layer``).

        Raises:
            ValueError: if the model has no ``output`` projection.
        """
        if not hasattr(model, "output"):
            raise ValueError(f"{type(model).__name__} has no `output` projection for LinearCrossEntropyLoss")
        model.skip_output_layer = True
        # Not registered as a sub-module: the projection's parameters belong to the model.
        # A soft-capped head (Gemma 2) is projected through the model's own `project`, chunk by chunk.
        capped = getattr(model, "output_softcapping", None) is not None
        object.__setattr__(self, "linear_projection", model.project if capped else model.output)

    def compute_cross_entropy(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Summed fp32 cross-entropy of one chunk of hidden states.

        Args:
            hidden (torch.Tensor): ``[n, d]`` hidden states.
            targets (torch.Tensor): ``[n]`` labels.

        Returns:
            torch.Tensor: 0-dim fp32 sum over the chunk's non-ignored tokens.
        """
        logits = self.linear_projection(hidden)  # [n, v]
        return F.cross_entropy(logits.float(), targets, ignore_index=self.ignore_index, reduction="sum")

    def forward(
        self, outputs: torch.Tensor, targets: torch.Tensor, reduction: Optional[str] = None
    ) -> torch.Tensor:
        """
        Args:
            outputs (torch.Tensor): final hidden states ``[b, s, d]``.
            targets (torch.Tensor): shifted labels ``[b, s]``.
            reduction (Optional[str]): ``"mean"`` or ``"sum"``; the constructor's if None.

        Returns:
            torch.Tensor: 0-dim fp32 loss.

        Raises:
            RuntimeError: if ``set_model_output`` was not called.
            ValueError: if ``outputs`` are logits or chunks rather than hidden states, or shapes differ.
        """
        reduction = check_reduction(reduction or self.reduction)
        if self.linear_projection is None:
            raise RuntimeError("LinearCrossEntropyLoss: call loss.set_model_output(model) before computing the loss")
        if not isinstance(outputs, torch.Tensor):
            raise ValueError(
                "LinearCrossEntropyLoss needs the hidden states [b, s, d], got a list (logits chunks): "
                "do not call model.set_num_output_chunks with this loss"
            )
        if outputs.dim() != 3 or outputs.shape[:2] != targets.shape:
            raise ValueError(
                f"hidden states {tuple(outputs.shape)} must be [b, s, d] matching labels {tuple(targets.shape)}"
            )
        weight = getattr(self.linear_projection, "weight", None)
        if weight is not None and outputs.shape[-1] != weight.shape[-1]:
            raise ValueError(
                f"Expected hidden states of size {weight.shape[-1]}, got {outputs.shape[-1]}: the model returned "
                "logits; it must honour `skip_output_layer` (TransformerDecoder does)"
            )
        hidden = outputs.reshape(-1, outputs.shape[-1])  # [b*s, d]
        labels = targets.reshape(-1)
        if self.mask_ignored_tokens:
            keep = labels != self.ignore_index
            hidden, labels = hidden[keep], labels[keep]
        rows = self.chunk_size or max(1, -(-hidden.shape[0] // self.num_output_chunks))
        weight = self._fusable_weight()
        if weight is not None:
            total = linear_cross_entropy(hidden, weight, labels, ignore_index=self.ignore_index, chunk_size=rows)
        else:
            total = sum_over_chunks(self.compute_cross_entropy, zip(hidden.split(rows), labels.split(rows)))
        return reduce_sum(total, (labels != self.ignore_index).sum(), reduction)

    def _fusable_weight(self) -> Optional[torch.Tensor]:
        """The projection's weight if projecting is exactly ``F.linear(x, weight)``, else None."""
        proj = self.linear_projection
        if isinstance(proj, TiedLinear):
            weight = proj.weight
        elif (
            type(proj) is nn.Linear
            and proj.bias is None
            and not (proj._forward_hooks or proj._forward_pre_hooks)
        ):
            weight = proj.weight
        else:
            return None
        # Tensor subclasses (NF4, DTensor under FSDP/TP) need their own module call.
        if type(weight) not in (torch.Tensor, nn.Parameter):
            return None
        return weight
