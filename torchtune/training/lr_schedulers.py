"""Learning-rate schedules and reading the current learning rate."""
import math
from typing import Union

import torch
from torch.optim.lr_scheduler import LambdaLR

from torchtune.training._optim_in_bwd import OptimizerInBackwardWrapper


def get_cosine_schedule_with_warmup(
    optimizer: torch.optim.Optimizer,
    num_warmup_steps: int,
    num_training_steps: int,
    num_cycles: float = 0.5,
    last_epoch: int = -1,
) -> LambdaLR:
    """Linear warmup from 0 to the base LR, then cosine decay.

    The LR multiplier at step ``t`` is ``t / w`` during warmup (``t < w``) and afterwards
    ``max(0, 0.5 * (1 + cos(2 * pi * num_cycles * p)))`` with ``p = (t - w) / (T - w)``;
    the default ``num_cycles=0.5`` decays to 0 at ``t = T``.

    Args:
        optimizer (torch.optim.Optimizer): optimizer to schedule.
        num_warmup_steps (int): ``w``, steps of linear warmup.
        num_training_steps (int): ``T``, total optimizer steps.
        num_cycles (float): number of cosine periods over the decay. Default 0.5.
        last_epoch (int): index of the last step done, to resume (-1 for a fresh run).

    Returns:
        LambdaLR: the scheduler; call ``step()`` after every optimizer step.

    Raises:
        ValueError: if the step counts are negative.
    """
    if num_warmup_steps < 0 or num_training_steps < 0:
        raise ValueError(
            f"num_warmup_steps ({num_warmup_steps}) and num_training_steps ({num_training_steps}) "
            "must be non-negative"
        )

    def multiplier(step: int) -> float:
        if step < num_warmup_steps:
            return step / max(1, num_warmup_steps)
        progress = (step - num_warmup_steps) / max(1, num_training_steps - num_warmup_steps)
        return max(0.0, 0.5 * (1.0 + math.cos(2.0 * math.pi * num_cycles * progress)))

    return LambdaLR(optimizer, multiplier, last_epoch)


def get_lr(optimizer: Union[torch.optim.Optimizer, OptimizerInBackwardWrapper]) -> float:
    """The learning rate shared by all param groups.

    Args:
        optimizer (Union[torch.optim.Optimizer, OptimizerInBackwardWrapper]): an optimizer or
            the optimizer-in-backward wrapper.

    Returns:
        float: the current learning rate.

    Raises:
        RuntimeError: if param groups have different learning rates (ambiguous to log).
    """
    lrs = {float(group["lr"]) for group in optimizer.param_groups}
    if len(lrs) != 1:
        raise RuntimeError(f"Param groups have different learning rates {sorted(lrs)}; get_lr needs one")
    return lrs.pop()
