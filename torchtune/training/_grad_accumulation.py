"""The training maths shared by every recipe: label shifting, token counting, gradient accumulation.

The rule. A micro-batch ``m`` contributes the *sum* of its token losses ``S_m = sum_i l_i`` and its
number of trained (non-ignored) tokens ``N_m``. After the ``K`` micro-batches of one optimizer
step, the accumulated gradient ``sum_m grad(S_m)`` is divided by ``N = sum_m N_m``:

    grad = (1 / N) * sum_m grad(S_m) = grad( sum_m S_m / N )

which is exactly the gradient of the mean token loss over the whole window, as if the ``K``
micro-batches were one batch. Averaging per-micro-batch means instead (``mean_m S_m / N_m``)
over-weights the tokens of short micro-batches. With ``W`` data-parallel ranks whose gradients are
averaged by DDP/FSDP, ``N`` is summed over ranks and the gradients are multiplied by ``W / N``.
"""
import math
from typing import Iterable, Tuple, Union

import torch
import torch.distributed as dist
from torch import nn

from torchtune._errors import TorchtuneError
from torchtune.training._distributed import get_world_size_and_rank

__all__ = [
    "GradientAccumulator",
    "NonFiniteLossError",
    "check_loss_finite",
    "count_trained_tokens",
    "scale_grads",
    "shift_labels",
]


def shift_labels(labels: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Align labels with next-token predictions: position ``t`` is trained to predict token ``t + 1``.

    Args:
        labels (torch.Tensor): ``[b, s]`` token labels, ``ignore_index`` where not trained.
        ignore_index (int): label of untrained positions. Default -100.

    Returns:
        torch.Tensor: ``[b, s]`` equal to ``labels[:, 1:]`` followed by an ``ignore_index`` column
        (the last position has no next token).

    Raises:
        ValueError: if ``labels`` is not 2-D.
    """
    if labels.dim() != 2:
        raise ValueError(f"labels must have shape [batch_size, seq_len], got {tuple(labels.shape)}")
    pad = labels.new_full((labels.shape[0], 1), ignore_index)
    return torch.cat([labels[:, 1:], pad], dim=1)


def count_trained_tokens(labels: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Number of positions whose loss is trained, as a device tensor (no host sync).

    Args:
        labels (torch.Tensor): shifted labels ``[b, s]``.
        ignore_index (int): label of untrained positions. Default -100.

    Returns:
        torch.Tensor: 0-dim int64 count.
    """
    return (labels != ignore_index).sum()


def scale_grads(model: Union[nn.Module, Iterable[torch.nn.Parameter]], scaler: Union[torch.Tensor, float]) -> None:
    """Multiply every existing gradient of ``model`` by ``scaler`` in place.

    Gradients are grouped by device and dtype so each group is scaled by one fused kernel.
    Parameters without a gradient are skipped.

    Args:
        model (Union[nn.Module, Iterable[torch.nn.Parameter]]): the model whose parameters' gradients
            are scaled, or an iterable of parameters (e.g. one optimizer's parameters).
        scaler (Union[torch.Tensor, float]): factor, typically ``1 / num_tokens`` as a device tensor
            so no host sync is needed.
    """
    params = model.parameters() if isinstance(model, nn.Module) else model
    groups = {}
    for p in params:
        if p.grad is not None:
            groups.setdefault((p.grad.device, p.grad.dtype), []).append(p.grad)
    for (device, dtype), grads in groups.items():
        factor = scaler.to(device=device, dtype=dtype) if isinstance(scaler, torch.Tensor) else scaler
        torch._foreach_mul_(grads, factor)


class NonFiniteLossError(TorchtuneError, RuntimeError):
    """The training loss became NaN or infinite.

    A ``TorchtuneError``, so ``tune run`` reports it on one line (the step and what to change);
    ``TUNE_DEBUG=1`` adds the traceback.
    """


def check_loss_finite(loss: Union[torch.Tensor, float], step: int) -> None:
    """Stop training with a clear message when the loss is NaN or infinite.

    Reading a device tensor synchronises with the accelerator, so recipes call this once per
    optimizer step on the already-synchronised logged loss, never per micro-batch.

    Args:
        loss (Union[torch.Tensor, float]): the loss of the step.
        step (int): the optimizer step, for the message.

    Raises:
        NonFiniteLossError: if ``loss`` is NaN or +-inf.
    """
    value = float(loss)
    if not math.isfinite(value):
        raise NonFiniteLossError(
            f"Loss is {value} at step {step}. Lower the learning rate, enable gradient clipping "
            "(clip_grad_norm), train in bf16/fp32 rather than fp16, and check the data for broken samples"
        )


class GradientAccumulator:
    """Bookkeeping of one optimizer step's window of micro-batches, applying the rule above.

    Per micro-batch the recipe calls ``backward`` on the *summed* token loss and then
    ``micro_step``; when that returns True it calls ``finish`` before clipping and stepping.

    Args:
        gradient_accumulation_steps (int): micro-batches per optimizer step (``K``).

    Raises:
        ValueError: if ``gradient_accumulation_steps < 1``.

    Example:
        >>> acc = GradientAccumulator(gradient_accumulation_steps=2)
        >>> for batch in dataloader:
        ...     labels = shift_labels(batch["labels"])
        ...     loss = loss_fn(model(batch["tokens"]), labels, reduction="sum")
        ...     loss.backward()
        ...     if acc.micro_step(loss.detach(), count_trained_tokens(labels)):
        ...         mean_loss, num_tokens = acc.finish(model.parameters())
        ...         optimizer.step(); optimizer.zero_grad()
    """

    def __init__(self, gradient_accumulation_steps: int) -> None:
        if gradient_accumulation_steps < 1:
            raise ValueError(f"gradient_accumulation_steps must be >= 1, got {gradient_accumulation_steps}")
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self._reset()

    def _reset(self) -> None:
        self._loss_sum = None
        self._num_tokens = None
        self._micro_steps = 0

    @property
    def micro_steps(self) -> int:
        """Micro-batches accumulated in the current window (0 between optimizer steps)."""
        return self._micro_steps

    def micro_step(self, loss_sum: torch.Tensor, num_tokens: torch.Tensor) -> bool:
        """Record one micro-batch (no host sync).

        Args:
            loss_sum (torch.Tensor): 0-dim summed token loss of the micro-batch (detached).
            num_tokens (torch.Tensor): 0-dim number of trained tokens of the micro-batch.

        Returns:
            bool: True when the window is complete and ``finish`` must be called.
        """
        loss_sum = loss_sum.detach().float()
        self._loss_sum = loss_sum if self._loss_sum is None else self._loss_sum + loss_sum
        num_tokens = torch.as_tensor(num_tokens, device=loss_sum.device)
        self._num_tokens = num_tokens if self._num_tokens is None else self._num_tokens + num_tokens
        self._micro_steps += 1
        return self._micro_steps == self.gradient_accumulation_steps

    def finish(self, params: Iterable[torch.nn.Parameter]) -> Tuple[float, int]:
        """Normalise the accumulated gradients by the window's token count and reset.

        Under ``torch.distributed`` the loss and token count are summed over ranks first and the
        gradients scaled by ``world_size / N``, because DDP/FSDP average gradients over ranks.

        Args:
            params (Iterable[torch.nn.Parameter]): parameters whose gradients to scale (empty with
                optimizer-in-backward, which normalises each micro-batch before its backward).

        Returns:
            Tuple[float, int]: the mean token loss of the window (``sum S_m / N``) and ``N``. A window
            without trained tokens (all labels ignored) has zero gradients and reports 0.0.

        Raises:
            RuntimeError: if no micro-batch was recorded.
        """
        if self._micro_steps == 0:
            raise RuntimeError("GradientAccumulator.finish() called before any micro_step()")
        loss_sum, num_tokens = self._loss_sum, self._num_tokens
        world_size, _ = get_world_size_and_rank()
        if world_size > 1:
            # Reduce copies: for K=1 these are the caller's own tensors.
            loss_sum, num_tokens = loss_sum.clone(), num_tokens.clone()
            dist.all_reduce(loss_sum)
            dist.all_reduce(num_tokens)
        denominator = num_tokens.clamp(min=1).float()
        scale_grads(params, world_size / denominator)
        # Host syncs once per optimizer step, for logging.
        mean_loss, total_tokens = (loss_sum / denominator).item(), int(num_tokens.item())
        self._reset()
        return mean_loss, total_tokens
