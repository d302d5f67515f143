"""Mask helpers shared by attention, the decoder and packed datasets."""

import itertools
from typing import List, Sequence, Tuple, Union

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


class DocumentMask:
    """The attention pattern of a padding-free batch: documents laid end to end in one row.

    A batch of ``b`` padded sequences becomes one row ``[1, T]`` of their real tokens
    (``T = sum(seq_lens)``); each token attends causally within its own document only, and
    positions restart at 0 in every document. Attention runs one document at a time, so no
    ``[T, T]`` mask is built and no score is computed across documents or on padding: the result
    equals attending each sequence on its own.

    Passed as ``mask`` to ``TransformerDecoder`` (with ``input_pos`` restarting per document). It
    is not a tensor: ``to`` returns it unchanged, so moving a batch to a device keeps it.

    Args:
        seq_lens (Sequence[int]): the documents' lengths, in order; all positive.

    Raises:
        ValueError: if there is no document or a length is not positive.
    """

    def __init__(self, seq_lens: Sequence[int]) -> None:
        lens = tuple(int(n) for n in seq_lens)
        if not lens or min(lens) < 1:
            raise ValueError(f"a DocumentMask needs at least one document and positive lengths, got {lens}")
        self.seq_lens = lens
        ends = list(itertools.accumulate(lens))
        self.spans: Tuple[Tuple[int, int], ...] = tuple(zip([0] + ends[:-1], ends))

    @property
    def total_len(self) -> int:
        """``T``, the length of the row."""
        return self.spans[-1][1]

    @property
    def max_len(self) -> int:
        """The longest document."""
        return max(self.seq_lens)

    def to(self, *args, **kwargs) -> "DocumentMask":
        """Itself: the lengths are plain integers, valid on every device."""
        return self

    def input_pos(self, device: Union[torch.device, str, None] = None) -> torch.Tensor:
        """Positions restarting at 0 in every document: ``[1, T]``."""
        return torch.cat([torch.arange(n, device=device) for n in self.seq_lens])[None]

    def dense(self, device: Union[torch.device, str, None] = None) -> torch.Tensor:
        """The same pattern as a boolean block-causal mask ``[1, T, T]`` (True = attend)."""
        doc_ids = torch.repeat_interleave(torch.arange(len(self.seq_lens), device=device),
                                          torch.tensor(self.seq_lens, device=device))
        return block_causal_mask(doc_ids[None])

    def __repr__(self) -> str:
        return f"DocumentMask(seq_lens={list(self.seq_lens)})"
