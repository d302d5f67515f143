from typing import Any, Dict, Iterator, Optional

from torch.utils.data import Dataset, DistributedSampler


class StatefulDistributedSampler(DistributedSampler):
    """``DistributedSampler`` that can resume in the middle of an epoch.

    The order of an epoch is a pure function of ``(seed, epoch)``; the sampler also remembers
    how many indices of the current epoch were already consumed, so a resumed run sees exactly
    the samples an uninterrupted run would have seen next.

    Args:
        dataset (Dataset): dataset to sample from.
        num_replicas (Optional[int]): number of data-parallel ranks (1 on a single device).
        rank (Optional[int]): this rank.
        shuffle (bool): shuffle every epoch. Default True.
        seed (int): base seed of the shuffle. Default 0.
        drop_last (bool): drop the tail that does not divide evenly across ranks. Default False.
    """

    def __init__(
        self,
        dataset: Dataset,
        num_replicas: Optional[int] = None,
        rank: Optional[int] = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
        self.start_index = 0

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        start, self.start_index = self.start_index, 0
        return iter(indices[start:])

    def state_dict(self, samples_consumed: int) -> Dict[str, Any]:
        """State to checkpoint after ``samples_consumed`` samples of the current epoch (on this rank)."""
        return {"epoch": self.epoch, "samples_consumed": samples_consumed, "seed": self.seed}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Resume at the saved position; the next ``__iter__`` skips the consumed samples.

        Raises:
            ValueError: if the saved shuffle seed differs from this sampler's.
        """
        if state["seed"] != self.seed:
            raise ValueError(
                f"Resuming with seed {self.seed} but the checkpoint's data order used seed {state['seed']}; "
                "set `seed` in the config to the original run's seed"
            )
        self.set_epoch(state["epoch"])
        self.start_index = state["samples_consumed"]
