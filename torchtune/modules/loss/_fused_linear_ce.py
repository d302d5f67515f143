"""Output projection + cross-entropy in one autograd node, chunk by chunk, gradients computed in forward.

For a chunk of hidden states ``h`` ``[c, d]`` and the projection weight ``W`` ``[v, d]``, the
summed token loss is ``sum_i lse(z_i) - z_i[y_i]`` with ``z = h W^T``, and its gradient with
respect to the logits is ``softmax(z) - onehot(y)`` (zero on ignored rows). Since the loss is a
scalar, that gradient is known as soon as the forward pass has the logits: this function
computes ``dL/dh = (softmax - onehot) W`` (and ``dL/dW`` when ``W`` is trainable) right there and
keeps only those, ``[n, d]`` (and ``[v, d]``). Backward then scales them by the incoming scalar.

Compared with projecting inside ``torch.utils.checkpoint`` (recomputing each chunk's logits in
backward), this runs two vocabulary-sized matmuls per chunk instead of three, and never holds
more than one chunk's logits. The weight is used whole, never sliced or expanded.
"""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        labels: torch.Tensor,
        ignore_index: int,
        chunk_size: int,
    ) -> torch.Tensor:
        need_hidden_grad, need_weight_grad = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_hidden = torch.empty_like(hidden) if need_hidden_grad else None
        # Accumulated in the weight's dtype, like autograd accumulates per-chunk gradients.
        grad_weight = torch.zeros_like(weight) if need_weight_grad else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, hidden.shape[0], chunk_size):
            h = hidden[start : start + chunk_size]  # [c, d], contiguous rows
            y = labels[start : start + chunk_size]  # [c]
            # The matmul runs in the weight's dtype; log_softmax reads it and works in fp32 (one pass,
            # no separate fp32 copy of the logits).
            log_probs = torch.log_softmax(F.linear(h, weight), dim=-1, dtype=torch.float32)  # [c, v]
            valid = y != ignore_index
            target = y.masked_fill(~valid, 0).unsqueeze(1)  # [c, 1]
            target_log_prob = log_probs.gather(1, target).squeeze(1)
            total -= torch.where(valid, target_log_prob, 0.0).sum()
            if not (need_hidden_grad or need_weight_grad):
                continue
            # dL/dlogits = softmax - onehot, computed in place; ignored rows are zeroed on the [c, d]
            # side below, which is cheaper than masking the [c, v] gradient.
            grad_logits = log_probs.exp_()
            grad_logits.scatter_add_(1, target, torch.full_like(target_log_prob, -1.0).unsqueeze(1))
            grad_logits = grad_logits.to(weight.dtype)
            keep = valid.unsqueeze(1).to(hidden.dtype)  # [c, 1]
            if need_hidden_grad:
                rows = grad_hidden[start : start + chunk_size]
                torch.mm(grad_logits, weight, out=rows)  # [c, d]
                rows.mul_(keep)
            if need_weight_grad:
                grad_weight.addmm_(grad_logits.t(), h * keep)  # [v, d], accumulated by the matmul
        ctx.save_for_backward(grad_hidden, grad_weight)
        return total

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: torch.Tensor) -> Tuple[Optional[torch.Tensor], ...]:
        grad_hidden, grad_weight = ctx.saved_tensors
        # A 0-dim fp32 factor keeps the result in the gradient's dtype, multiplied in fp32.
        if grad_hidden is not None:
            grad_hidden = grad_hidden * grad_output
        if grad_weight is not None:
            grad_weight = grad_weight * grad_output
        return grad_hidden, grad_weight, None, None, None


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    ignore_index: int = -100,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Summed cross-entropy of ``hidden @ weight.T`` against ``labels``, chunk by chunk.

    Equal to ``F.cross_entropy(F.linear(hidden, weight).float(), labels, ignore_index=ignore_index,
    reduction="sum")`` and differentiable with respect to ``hidden`` and ``weight``, while at most
    ``chunk_size`` rows of logits exist at a time and no logits are kept for backward.

    Args:
        hidden (torch.Tensor): ``[n, d]`` hidden states.
        weight (torch.Tensor): ``[v, d]`` output projection (no bias).
        labels (torch.Tensor): ``[n]`` target ids, ``ignore_index`` where not trained.
        ignore_index (int): label of untrained rows. Default -100.
        chunk_size (int): rows per chunk. Default 1024.

    Returns:
        torch.Tensor: 0-dim fp32 sum over the rows whose label is not ``ignore_index``.

    Raises:
        ValueError: if the shapes do not line up or ``chunk_size`` is not positive.
    """
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"hidden {tuple(hidden.shape)} must be [n, d] and weight {tuple(weight.shape)} [v, d]")
    if labels.shape != hidden.shape[:1]:
        raise ValueError(f"labels {tuple(labels.shape)} must be [n] for hidden states {tuple(hidden.shape)}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    return _LinearCrossEntropy.apply(hidden.contiguous(), weight, labels, ignore_index, chunk_size)
