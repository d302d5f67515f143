from typing import Dict, List, Optional

import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from torchtune.data._common import CROSS_ENTROPY_IGNORE_IDX


class PackedDataset(Dataset):
    """Greedily packs tokenized samples into sequences of exactly ``max_seq_len`` tokens.

    Samples are appended in order to the current pack until the next one does not fit; the
    pack is then padded and a new one started. Each pack records its documents' lengths
    (``seq_lens``, the padding counting as one more document) so that
    :func:`~torchtune.data.padded_collate_packed` can build a block-causal mask, and positions
    (``input_pos``) restart at 0 for every document. The first label of every document is set
    to ``CROSS_ENTROPY_IGNORE_IDX``: after the recipe shifts labels, that position would make the
    last token of the previous document predict the first token of the next one. With these
    three rules a pack's summed loss equals the sum of its documents' losses computed one by one.

    Args:
        ds (Dataset): items with ``tokens`` and ``labels`` (lists of ints), e.g. an SFTDataset.
        max_seq_len (int): length of every pack.
        padding_idx (int): token id of the padding. Default 0.
        max_packs (Optional[int]): stop after this many packs. Default None (pack everything).
        split_across_pack (bool): if True, a sample that does not fit is cut: its start fills
            the current pack and the rest continues in the next one (each piece is its own
            document). If False, a sample longer than ``max_seq_len`` is an error. Default False.

    Raises:
        ValueError: if ``split_across_pack`` is False and a sample is longer than ``max_seq_len``.
    """

    def __init__(
        self,
        ds: Dataset,
        *,
        max_seq_len: int,
        padding_idx: int = 0,
        max_packs: Optional[int] = None,
        split_across_pack: bool = False,
    ) -> None:
        if max_seq_len <= 0:
            raise ValueError(f"max_seq_len must be positive, got {max_seq_len}")
        self.ds = ds
        self.max_seq_len = max_seq_len
        self.padding_idx = padding_idx
        self.max_packs = max_packs
        self.split_across_pack = split_across_pack
        self.packs: List[Dict[str, torch.Tensor]] = []
        self._pack()

    def _pack(self) -> None:
        tokens: List[int] = []
        labels: List[int] = []
        seq_lens: List[int] = []
        for index in tqdm(range(len(self.ds)), desc="Packing dataset", dynamic_ncols=True, leave=False):
            sample = self.ds[index]
            sample_tokens, sample_labels = sample["tokens"], sample["labels"]
            n = len(sample_tokens)
            if n > self.max_seq_len and not self.split_across_pack:
                raise ValueError(
                    f"Dataset sample {index} has {n} tokens, more than max_seq_len={self.max_seq_len}. "
                    "Set the tokenizer's max_seq_len to truncate samples, or split_across_pack=True."
                )
            start = 0
            while start < n:
                room = self.max_seq_len - len(tokens)
                if not self.split_across_pack and n > room:
                    self._finish(tokens, labels, seq_lens)
                    tokens, labels, seq_lens = [], [], []
                    if self._full():
                        return
                    room = self.max_seq_len
                take = min(room, n - start)
                tokens.extend(sample_tokens[start : start + take])
                labels.append(CROSS_ENTROPY_IGNORE_IDX)
                labels.extend(sample_labels[start + 1 : start + take])
                seq_lens.append(take)
                start += take
                if len(tokens) == self.max_seq_len:
                    self._finish(tokens, labels, seq_lens)
                    tokens, labels, seq_lens = [], [], []
                    if self._full():
                        return
        if tokens:
            self._finish(tokens, labels, seq_lens)

    def _full(self) -> bool:
        return self.max_packs is not None and len(self.packs) >= self.max_packs

    def _finish(self, tokens: List[int], labels: List[int], seq_lens: List[int]) -> None:
        """Pad the current pack to ``max_seq_len`` and store it as tensors."""
        num_pad = self.max_seq_len - len(tokens)
        if num_pad:
            tokens = tokens + [self.padding_idx] * num_pad
            labels = labels + [CROSS_ENTROPY_IGNORE_IDX] * num_pad
            seq_lens = seq_lens + [num_pad]
        lens = torch.tensor(seq_lens, dtype=torch.long)
        # Positions restart at 0 in every document: arange minus each document's start offset.
        starts = torch.repeat_interleave(torch.cumsum(lens, 0) - lens, lens)
        self.packs.append({
            "tokens": torch.tensor(tokens, dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long),
            "input_pos": torch.arange(self.max_seq_len) - starts,
            "seq_lens": lens,
        })

    def __len__(self) -> int:
        return len(self.packs)

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        return self.packs[index]
