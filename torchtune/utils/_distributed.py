"""Rank helpers that need no process-group setup (the setup lives in ``torchtune.training``)."""
import logging
from typing import Tuple

import torch.distributed as dist


def get_world_size_and_rank() -> Tuple[int, int]:
    """World size and rank of the initialised process group.

    Returns:
        Tuple[int, int]: ``(world_size, rank)``; ``(1, 0)`` when ``torch.distributed`` is not
        initialised (a single-device run).
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def log_rank_zero(logger: logging.Logger, msg: str, level: int = logging.INFO) -> None:
    """Log ``msg`` on rank 0 only, so a distributed run prints it once.

    Args:
        logger (logging.Logger): the logger, e.g. ``torchtune.utils.get_logger()``.
        msg (str): the message.
        level (int): a ``logging`` level. Default ``logging.INFO``.
    """
    if get_world_size_and_rank()[1] == 0:
        logger.log(level, msg, stacklevel=2)
