import bisect
from itertools import accumulate
from typing import Any, List

from torch.utils.data import Dataset

from torchtune.datasets._packed import PackedDataset


class ConcatDataset(Dataset):
    """Several datasets read as one, in order (a list of datasets in a config).

    Args:
        datasets (List[Dataset]): map-style datasets.

    Raises:
        ValueError: if the list is empty, or mixes packed and unpacked datasets (their items
            have different fields and cannot share a collate function).
    """

    def __init__(self, datasets: List[Dataset]) -> None:
        self._datasets = list(datasets)
        if not self._datasets:
            raise ValueError("ConcatDataset needs at least one dataset")
        packed = [isinstance(d, PackedDataset) for d in self._datasets]
        if any(packed) and not all(packed):
            raise ValueError(
                "ConcatDataset cannot mix packed and unpacked datasets; set packed to the same value "
                f"for all of them (packed: {packed})"
            )
        self.packed = all(packed)
        self._ends = list(accumulate(len(d) for d in self._datasets))

    def __len__(self) -> int:
        return self._ends[-1]

    def __getitem__(self, index: int) -> Any:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a ConcatDataset of length {len(self)}")
        which = bisect.bisect_right(self._ends, index)
        start = self._ends[which - 1] if which else 0
        return self._datasets[which][index - start]
