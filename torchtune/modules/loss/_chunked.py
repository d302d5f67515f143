"""Cross-entropy summed chunk by chunk, each chunk upcast to fp32 on its own."""
from typing import Callable, Iterable, Tuple

import torch
from torch.utils.checkpoint import checkpoint

REDUCTIONS = ("mean", "sum")


def sum_over_chunks(
    compute: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    chunks: Iterable[Tuple[torch.Tensor, torch.Tensor]],
) -> torch.Tensor:
    """Sum ``compute(x, target)`` over chunks, holding one chunk's fp32 logits at a time.

    Each chunk is checkpointed when gradients flow: only its (low-precision) input is kept for
    backward and the fp32 log-probabilities are recomputed there, one chunk at a time. Without it
    autograd would keep every chunk's fp32 log-softmax alive, i.e. the whole sequence's fp32 logits.

    Args:
        compute (Callable[[torch.Tensor, torch.Tensor], torch.Tensor]): summed loss of one chunk.
        chunks (Iterable[Tuple[torch.Tensor, torch.Tensor]]): ``(input, target)`` pairs.

    Returns:
        torch.Tensor: 0-dim fp32 sum.
    """
    total = None
    for x, target in chunks:
        if torch.is_grad_enabled() and x.requires_grad:
            part = checkpoint(compute, x, target, use_reentrant=False, preserve_rng_state=False)
        else:
            part = compute(x, target)
        total = part if total is None else total + part
    return total


def reduce_sum(total: torch.Tensor, num_tokens: torch.Tensor, reduction: str) -> torch.Tensor:
    """``total`` for ``"sum"``, ``total / max(num_tokens, 1)`` for ``"mean"``."""
    if reduction == "sum":
        return total
    return total / num_tokens.clamp(min=1)


def check_reduction(reduction: str) -> str:
    """Validate a reduction name.

    Raises:
        ValueError: if ``reduction`` is not ``"mean"`` or ``"sum"``.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction={reduction!r} must be one of {REDUCTIONS}")
    return reduction
