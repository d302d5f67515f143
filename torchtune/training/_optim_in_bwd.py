"""Optimizer step fused into the backward pass, one optimizer per parameter.

Each parameter's optimizer steps from a ``post_accumulate_grad`` hook as soon as that gradient is
ready, then frees the gradient, so at most one parameter's gradient is alive at a time. Global
operations that need every gradient at once (norm clipping, gradient accumulation) are therefore
impossible with this mode.
"""
from typing import Any, Dict, List

import torch
from torch import nn


class OptimizerInBackwardWrapper:
    """Checkpointing and LR handle over the per-parameter optimizers of optimizer-in-backward.

    Args:
        optim_map (Dict[str, torch.optim.Optimizer]): parameter name -> its optimizer.
    """

    def __init__(self, optim_map: Dict[str, torch.optim.Optimizer]) -> None:
        self.optim_map = optim_map
        self.lr_scheduler = None
        self._lr_hooks: List[Any] = []

    @property
    def param_groups(self) -> List[Dict[str, Any]]:
        """The param groups ``get_lr`` reads: the scheduler's optimizer once one is set, else all."""
        if self.lr_scheduler is not None:
            return self.lr_scheduler.optimizer.param_groups
        return [g for opt in self.optim_map.values() for g in opt.param_groups]

    def state_dict(self) -> Dict[str, Any]:
        """Every optimizer's state dict keyed by parameter name."""
        return {name: opt.state_dict() for name, opt in self.optim_map.items()}

    def load_state_dict(self, optim_ckpt_map: Dict[str, Any]) -> None:
        """Load the state saved by ``state_dict``.

        Args:
            optim_ckpt_map (Dict[str, Any]): parameter name -> optimizer state dict.

        Raises:
            ValueError: if the saved state lacks a parameter of this model or has extra ones.
        """
        missing = sorted(set(self.optim_map) - set(optim_ckpt_map))
        unexpected = sorted(set(optim_ckpt_map) - set(self.optim_map))
        if missing or unexpected:
            raise ValueError(
                "Optimizer-in-backward state does not match the model: "
                f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
            )
        for name, opt in self.optim_map.items():
            opt.load_state_dict(optim_ckpt_map[name])

    def get_optim_key(self, key: str) -> Any:
        """A param-group setting such as ``"lr"``, read from the first of ``param_groups``."""
        return self.param_groups[0][key]

    def set_lr_scheduler(self, lr_scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
        """Let one scheduler, built on one of the per-parameter optimizers, drive all of them.

        Each other optimizer copies the scheduled learning rate right before it steps (a step
        pre-hook, so nothing unpicklable ends up in the scheduler's state dict), and
        ``param_groups`` then reports the scheduler's optimizer.

        Args:
            lr_scheduler (torch.optim.lr_scheduler.LRScheduler): scheduler over one of the optimizers.

        Raises:
            ValueError: if the scheduler's optimizer is not one of the wrapped optimizers.
        """
        driver = lr_scheduler.optimizer
        if not any(opt is driver for opt in self.optim_map.values()):
            raise ValueError("The LR scheduler must be built on one of the optimizer-in-backward optimizers")
        for handle in self._lr_hooks:
            handle.remove()

        def copy_scheduled_lr(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            for group, source in zip(opt.param_groups, driver.param_groups):
                group["lr"] = source["lr"]

        self._lr_hooks = [
            opt.register_step_pre_hook(copy_scheduled_lr) for opt in self.optim_map.values() if opt is not driver
        ]
        self.lr_scheduler = lr_scheduler

    def _require_scheduler(self, caller: str) -> torch.optim.lr_scheduler.LRScheduler:
        if self.lr_scheduler is None:
            raise RuntimeError(f"OptimizerInBackwardWrapper.{caller}() needs set_lr_scheduler() to be called first")
        return self.lr_scheduler

    def step_lr_scheduler(self, epoch: int = None):
        """Advance the learning-rate schedule by one step (all optimizers follow on their next step).

        Args:
            epoch (int): passed on to the scheduler's ``step`` when given (a deprecated form in
                ``torch.optim``); None steps once. Default None.

        Raises:
            RuntimeError: if no scheduler was set with ``set_lr_scheduler``.
        """
        scheduler = self._require_scheduler("step_lr_scheduler")
        if epoch is None:
            scheduler.step()
        else:
            scheduler.step(epoch)

    def get_last_lr(self) -> float:
        """The learning rate the scheduler computed last (of its first param group).

        Returns:
            float: the learning rate.

        Raises:
            RuntimeError: if no scheduler was set with ``set_lr_scheduler``.
        """
        return self._require_scheduler("get_last_lr").get_last_lr()[0]


def create_optim_in_bwd_wrapper(
    model: nn.Module, optim_dict: Dict[nn.Parameter, torch.optim.Optimizer]
) -> OptimizerInBackwardWrapper:
    """Name the per-parameter optimizers by parameter name for checkpointing.

    Args:
        model (nn.Module): the model whose parameters are the keys of ``optim_dict``.
        optim_dict (Dict[nn.Parameter, torch.optim.Optimizer]): parameter -> its optimizer.

    Returns:
        OptimizerInBackwardWrapper: the wrapper.
    """
    return OptimizerInBackwardWrapper(
        {name: optim_dict[p] for name, p in model.named_parameters() if p in optim_dict}
    )


def register_optim_in_bwd_hooks(
    model: nn.Module, optim_dict: Dict[nn.Parameter, torch.optim.Optimizer]
) -> None:
    """Step each parameter's optimizer as soon as its gradient is accumulated, then free the gradient.

    Args:
        model (nn.Module): the model.
        optim_dict (Dict[nn.Parameter, torch.optim.Optimizer]): trainable parameter -> its optimizer.

    Raises:
        ValueError: naming a trainable parameter that has no optimizer in ``optim_dict``.
    """
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param not in optim_dict:
            raise ValueError(f"Trainable parameter {name!r} has no optimizer in optim_dict")

    def step_and_free(param: nn.Parameter) -> None:
        optim_dict[param].step()
        optim_dict[param].zero_grad(set_to_none=True)

    for param in model.parameters():
        if param.requires_grad:
            param.register_post_accumulate_grad_hook(step_and_free)
