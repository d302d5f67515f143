"""Attention masks and positions for left-padded prompts."""

from typing import Optional

import torch


def get_causal_mask_from_padding_mask(
    padding_mask: torch.Tensor, target_seq_len: Optional[int] = None
) -> torch.Tensor:
    """Causal mask that also hides padding tokens from every query.

    Query ``i`` may attend key ``j`` when ``j <= i`` and ``j`` is not padding. Padding queries
    also attend to themselves, so no row of the mask is empty: an empty row makes SDPA return
    NaN, which would then be written into the KV cache.

    Args:
        padding_mask (torch.Tensor): boolean ``[b, s]``, False at padding positions.
        target_seq_len (Optional[int]): number of key columns (the KV-cache length when
            prefilling a cache); ``s`` if None. Columns ``>= s`` are never attended.

    Returns:
        torch.Tensor: boolean ``[b, s, target_seq_len]``, True = may attend.

    Raises:
        ValueError: if ``padding_mask`` is not 2-D or ``target_seq_len < s``.
    """
    if padding_mask.dim() != 2:
        raise ValueError(f"padding_mask must have shape [b, s], got {tuple(padding_mask.shape)}")
    b, s = padding_mask.shape
    target_seq_len = s if target_seq_len is None else target_seq_len
    if target_seq_len < s:
        raise ValueError(f"target_seq_len ({target_seq_len}) must be >= the sequence length ({s})")
    device = padding_mask.device
    rows = torch.arange(s, device=device).unsqueeze(1)  # [s, 1]
    cols = torch.arange(target_seq_len, device=device).unsqueeze(0)  # [1, t]
    keys = torch.nn.functional.pad(padding_mask.bool(), (0, target_seq_len - s), value=False)
    return ((cols <= rows) & keys.unsqueeze(1)) | (cols == rows)  # [b, s, t]


def get_position_ids_from_padding_mask(padding_mask: torch.Tensor) -> torch.Tensor:
    """Positions that start at 0 on the first real token of every row.

    Args:
        padding_mask (torch.Tensor): boolean ``[b, s]``, False at padding positions.

    Returns:
        torch.Tensor: ``[b, s]`` ``torch.long`` positions; padding positions get the position of
        the previous real token (0 before the first one). Their value is irrelevant because
        padding keys are masked out.
    """
    return (padding_mask.long().cumsum(dim=-1) - 1).clamp_(min=0)
