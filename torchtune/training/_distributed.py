"""The two distributed facts every recipe asks for, safe to call in a single process."""
import os
from typing import Tuple

import torch.distributed as dist


def is_distributed() -> bool:
    """Whether this process is one of several data-parallel ranks.

    True when ``torch.distributed`` is initialised with more than one rank, or when a launcher
    such as ``torchrun`` set ``WORLD_SIZE > 1`` together with ``MASTER_ADDR`` / ``MASTER_PORT``
    (so the recipe is about to initialise the process group).

    Returns:
        bool: True for a multi-rank run.
    """
    if not dist.is_available():
        return False
    if dist.is_initialized():
        return dist.get_world_size() > 1
    env_ready = all(k in os.environ for k in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE"))
    return env_ready and int(os.environ["WORLD_SIZE"]) > 1


def get_world_size_and_rank() -> Tuple[int, int]:
    """World size and rank of the initialised process group.

    Returns:
        Tuple[int, int]: ``(world_size, rank)``; ``(1, 0)`` when ``torch.distributed`` is not
        initialised (a single-device run).
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0
