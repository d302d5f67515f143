from typing import Any, List, Sequence

from torch.utils.data import Dataset

from torchtune.data._common import CROSS_ENTROPY_IGNORE_IDX
from torchtune.datasets._packed import PackedDataset


def labels_from_mask(tokens: Sequence[int], mask: Sequence[bool]) -> List[int]:
    """The tokens, with masked positions (True) set to ``CROSS_ENTROPY_IGNORE_IDX``."""
    return [CROSS_ENTROPY_IGNORE_IDX if m else t for t, m in zip(tokens, mask)]


def maybe_pack(ds: Dataset, tokenizer: Any, packed: bool, split_across_pack: bool = False) -> Dataset:
    """Wrap ``ds`` in a :class:`PackedDataset` of ``tokenizer.max_seq_len`` when ``packed``.

    Raises:
        ValueError: if ``packed`` and the tokenizer has no ``max_seq_len``.
    """
    if not packed:
        return ds
    max_seq_len = getattr(tokenizer, "max_seq_len", None)
    if max_seq_len is None:
        raise ValueError("packed=True needs the tokenizer's max_seq_len to be set (it is the pack length)")
    return PackedDataset(ds, max_seq_len=max_seq_len, padding_idx=getattr(tokenizer, "pad_id", 0) or 0,
                         split_across_pack=split_across_pack)
