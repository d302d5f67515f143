"""Turning next-token logits into token ids: greedy, temperature, top-k and top-p (nucleus)."""

from typing import Optional

import torch


def _check_sampling_args(temperature: float, top_k: Optional[int], top_p: Optional[float]) -> None:
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 means greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be a positive integer or None, got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p}")


def _top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero every token outside the smallest set whose probability mass reaches ``top_p``.

    The result is not renormalised: sampling by ``argmax(probs / q)`` is invariant to scale.
    """
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    # A token is dropped when the mass strictly before it already reaches top_p, so the most
    # likely token always survives.
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    sorted_probs = sorted_probs.masked_fill(mass_before >= top_p, 0.0)
    return torch.zeros_like(probs).scatter_(-1, order, sorted_probs)


def sample(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    q: Optional[torch.Tensor] = None,
    top_p: Optional[float] = None,
) -> torch.Tensor:
    """Pick one token per row from next-token logits.

    ``temperature == 0`` is greedy (argmax). Otherwise logits are divided by the temperature,
    restricted to the ``top_k`` largest and then to the ``top_p`` nucleus, and a token is drawn
    from the softmax by ``argmax(probs / q)`` with ``q ~ Exponential(1)``: the index of the
    smallest ``q_i / p_i`` is distributed as ``p`` and, unlike ``torch.multinomial``, needs no
    host synchronisation.

    Args:
        logits (torch.Tensor): ``[b, v]`` (or ``[v]``) unnormalised scores of the next token.
        temperature (float): softmax temperature; 0 means greedy. Default 1.0.
        top_k (Optional[int]): keep only the ``top_k`` most likely tokens (ties with the k-th
            are kept). Default None (no limit).
        q (Optional[torch.Tensor]): ``[b, v]`` Exponential(1) noise; drawn from the global RNG if
            None. Pass noise drawn from a ``torch.Generator`` for reproducible sampling.
        top_p (Optional[float]): nucleus sampling, keep the smallest set of tokens whose
            probability reaches ``top_p`` (extension over torchtune). Default None.

    Returns:
        torch.Tensor: ``[b, 1]`` (or ``[1]``) token ids, ``torch.long``.

    Raises:
        ValueError: if ``temperature < 0``, ``top_k < 1`` or ``top_p`` is outside ``(0, 1]``.
    """
    _check_sampling_args(temperature, top_k, top_p)
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    # Sampling maths in fp32: bf16 softmax tails are too coarse for top-p sums.
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth_largest = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth_largest, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p is not None and top_p < 1.0:
        probs = _top_p_filter(probs, top_p)
    if q is None:
        q = torch.empty_like(probs).exponential_(1)
    return (probs / q).argmax(dim=-1, keepdim=True)
