"""A resumable sampler whose batches hold samples of similar length (less padding)."""

import random
from typing import Iterator, List, Optional, Sequence

from torch.utils.data import Dataset

from torchtune.training._sampler import StatefulDistributedSampler


class LengthGroupedSampler(StatefulDistributedSampler):
    """``StatefulDistributedSampler`` whose consecutive ``batch_size`` indices have similar lengths.

    Each epoch, the rank's indices come in the usual shuffled order (a function of ``(seed, epoch)``);
    they are then cut into windows of ``batch_size * group_batches`` samples, each window is sorted by
    length and cut into batches, and the batches of a window are shuffled. Every sample is still
    seen once per epoch and batches are still a random draw, but a batch's samples have similar
    lengths, so right-padding to the longest wastes little compute. Resuming mid-epoch
    (``state_dict`` / ``load_state_dict``) works as for the parent class, as long as ``samples_consumed``
    is a multiple of ``batch_size``.

    Args:
        dataset (Dataset): dataset to sample from.
        lengths (Sequence[int]): the length (e.g. number of tokens) of every sample of ``dataset``.
        batch_size (int): samples per batch, as given to the ``DataLoader``.
        group_batches (int): batches per sorted window; larger groups lengths more tightly, smaller
            keeps the order more random. Default 32.
        num_replicas (Optional[int]): number of data-parallel ranks (1 on a single device).
        rank (Optional[int]): this rank.
        shuffle (bool): shuffle every epoch (windows are still sorted when False). Default True.
        seed (int): base seed of the shuffle. Default 0.
        drop_last (bool): drop the tail that does not divide evenly across ranks. Default False.

    Raises:
        ValueError: if ``lengths`` does not have one entry per sample, or ``batch_size`` or
            ``group_batches`` is not positive.
    """

    def __init__(
        self,
        dataset: Dataset,
        lengths: Sequence[int],
        batch_size: int,
        group_batches: int = 32,
        num_replicas: Optional[int] = None,
        rank: Optional[int] = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
        if len(lengths) != len(dataset):
            raise ValueError(f"lengths has {len(lengths)} entries for a dataset of {len(dataset)} samples")
        if batch_size < 1 or group_batches < 1:
            raise ValueError(f"batch_size ({batch_size}) and group_batches ({group_batches}) must be positive")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.group_batches = group_batches

    def _grouped(self, indices: List[int]) -> List[int]:
        rng = random.Random(f"{self.seed}-{self.epoch}")
        window = self.batch_size * self.group_batches
        out: List[int] = []
        for start in range(0, len(indices), window):
            chunk = sorted(indices[start : start + window], key=lambda i: self.lengths[i])
            batches = [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
            # A short last batch (end of the epoch) stays last so the DataLoader's batches stay aligned.
            tail = batches.pop() if len(batches[-1]) < self.batch_size else None
            if self.shuffle:
                rng.shuffle(batches)
            out.extend(i for batch in batches for i in batch)
            if tail is not None:
                out.extend(tail)
        return out

    def __iter__(self) -> Iterator[int]:
        # The parent's order (shuffled, split across ranks) with no resume offset applied yet.
        start, self.start_index = self.start_index, 0
        indices = self._grouped(list(super().__iter__()))
        return iter(indices[start:])
