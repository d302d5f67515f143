"""Mask helpers shared by attention, the decoder and packed datasets."""

from typing import List, Union

import torch

# A boolean mask ``[b, s_q, s_kv]`` where True means "may attend".
_MaskType = torch.Tensor


def causal_mask(seq_len: int, device: Union[torch.device, str, None] = None) -> torch.Tensor:
    """Lower-triangular boolean mask ``[seq_len, seq_len]`` (True = attend)."""
    return torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).tril_()


def block_causal_mask(document_ids: torch.Tensor) -> torch.Tensor:
    """Causal mask that also blocks attention across documents of a packed sequence.

    Args:
        document_ids (torch.Tensor): ``[b, s]`` integer id of the document each token belongs to.

    Returns:
        torch.Tensor: boolean ``[b, s, s]``, True where query ``i`` may attend key ``j``
        (``j <= i`` and same document).
    """
    s = document_ids.shape[-1]
    same_doc = document_ids.unsqueeze(-1) == document_ids.unsqueeze(-2)
    return same_doc & causal_mask(s, device=document_ids.device)


def create_block_causal_mask(seq_lens: List[torch.Tensor]) -> torch.Tensor:
    """Dense block-causal mask from per-sample document lengths.

    Args:
        seq_lens (List[torch.Tensor]): for each sample of the batch, the lengths of its documents
            (they sum to the same packed length ``s`` for every sample).

    Returns:
        torch.Tensor: boolean ``[b, s, s]``, True where a token may attend (earlier or same position,
        same document).
    """
    doc_ids = [
        torch.repeat_interleave(torch.arange(len(lens), device=lens.device), lens) for lens in seq_lens
    ]
    return block_causal_mask(torch.stack(doc_ids))


def packed_block_causal_mask(seq_lens: List[torch.Tensor]) -> torch.Tensor:
    """The attention mask of a batch of packed sequences.

    Attention here runs on SDPA with dense boolean masks, so this is ``create_block_causal_mask``.

    Args:
        seq_lens (List[torch.Tensor]): for each sample of the batch, the lengths of its documents.

    Returns:
        torch.Tensor: boolean ``[b, s, s]``.
    """
    return create_block_causal_mask(seq_lens)
