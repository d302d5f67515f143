"""Knowledge distillation for the recipes: the frozen teacher and the distillation micro-batch objective.

The student minimises, per trained token, ``(1 - kd_ratio) * CE(student, label) + kd_ratio * KD(student,
teacher)`` where KD is one of the ``torchtune.modules.loss`` KL losses. ``kd_loss_step`` returns the
*sum* over the micro-batch's trained tokens and their number, so ``training.TrainLoop`` normalises it
over the whole accumulation window (and all ranks) exactly as it does cross-entropy.
"""

from typing import Any, ContextManager, Dict, List, Tuple, Union

import torch
from torch import nn

from torchtune.modules.loss import CEWithChunkedOutputLoss, SFTLoss
from torchtune.training._grad_accumulation import count_trained_tokens, shift_labels

Logits = Union[torch.Tensor, List[torch.Tensor]]


def check_kd_ratio(kd_ratio: float) -> float:
    """Validate the weight of the distillation term.

    Raises:
        ValueError: if ``kd_ratio`` is outside ``[0, 1]``.
    """
    if not 0.0 <= float(kd_ratio) <= 1.0:
        raise ValueError(f"kd_ratio must be in [0, 1] (0: cross-entropy only, 1: distillation only), got {kd_ratio}")
    return float(kd_ratio)


def freeze_teacher(teacher: nn.Module) -> nn.Module:
    """Put the teacher in eval mode with every parameter frozen; returns it."""
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


def prepare_kd_loss(kd_loss_fn: nn.Module, loss_fn: nn.Module, student: nn.Module, teacher: nn.Module) -> nn.Module:
    """Make student and teacher return logits in the form the two losses take.

    A chunked KD loss (``num_output_chunks``) needs both models to return that many sequence
    chunks, which must then also be what the cross-entropy (already prepared with
    ``training.prepare_loss``) reads.

    Args:
        kd_loss_fn (nn.Module): the instantiated ``kd_loss``.
        loss_fn (nn.Module): the prepared cross-entropy loss.
        student (nn.Module): the student decoder.
        teacher (nn.Module): the teacher decoder.

    Returns:
        nn.Module: ``kd_loss_fn``.

    Raises:
        ValueError: if the cross-entropy loss consumes hidden states (``LinearCrossEntropyLoss``:
            distillation needs the student's logits), the two losses disagree on chunks or on
            ``ignore_index``.
    """
    if isinstance(loss_fn, SFTLoss):
        raise ValueError(
            f"knowledge distillation needs the student's logits, but loss {type(loss_fn).__name__} makes the model "
            "return hidden states; set loss._component_=torchtune.modules.loss.CEWithChunkedOutputLoss"
        )
    if getattr(kd_loss_fn, "ignore_index", loss_fn.ignore_index) != loss_fn.ignore_index:
        raise ValueError(f"kd_loss.ignore_index={kd_loss_fn.ignore_index} differs from loss.ignore_index="
                         f"{loss_fn.ignore_index}")
    chunks = getattr(kd_loss_fn, "num_output_chunks", None)
    if chunks is not None:
        if isinstance(loss_fn, CEWithChunkedOutputLoss) and loss_fn.num_output_chunks != chunks:
            raise ValueError(f"kd_loss.num_output_chunks={chunks} must equal loss.num_output_chunks="
                             f"{loss_fn.num_output_chunks}: both read the same student logits chunks")
        student.set_num_output_chunks(chunks)
        teacher.set_num_output_chunks(chunks)
    return kd_loss_fn


def _as_tensor(logits: Logits) -> torch.Tensor:
    return torch.cat(logits, dim=1) if isinstance(logits, (list, tuple)) else logits


def kd_loss_step(
    model: nn.Module,
    loss_fn: nn.Module,
    batch: Dict[str, torch.Tensor],
    activations_ctx: ContextManager,
    *,
    teacher_model: nn.Module,
    kd_loss_fn: nn.Module,
    kd_ratio: float,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Summed distillation objective of one micro-batch and its number of trained tokens.

    ``(1 - kd_ratio) * sum_i CE_i + kd_ratio * sum_i KD_i`` over the trained positions ``i``
    (labels shifted for next-token prediction); the teacher runs without gradients. Pass it to
    ``TrainLoop.run(loss_step=partial(kd_loss_step, teacher_model=..., kd_loss_fn=..., kd_ratio=...))``.

    Args:
        model (nn.Module): the student.
        loss_fn (nn.Module): cross-entropy taking ``reduction="sum"`` (``CEWithChunkedOutputLoss``).
        batch (Dict[str, torch.Tensor]): ``tokens`` [b, s], ``labels`` [b, s] (popped), other model inputs.
        activations_ctx (ContextManager): entered around the student's forward.
        teacher_model (nn.Module): the frozen teacher (``freeze_teacher``).
        kd_loss_fn (nn.Module): a ``torchtune.modules.loss`` KL loss.
        kd_ratio (float): weight of the distillation term, in ``[0, 1]``.

    Returns:
        Tuple[torch.Tensor, torch.Tensor]: the summed loss (0-dim fp32) and the trained-token count.
    """
    labels = shift_labels(batch.pop("labels"), loss_fn.ignore_index)
    num_tokens = count_trained_tokens(labels, loss_fn.ignore_index)
    with torch.no_grad():
        teacher_logits = teacher_model(**batch)
    with activations_ctx:
        logits = model(**batch)
    ce = loss_fn(logits, labels, reduction="sum")
    if getattr(kd_loss_fn, "num_output_chunks", None) is None:
        logits, teacher_logits = _as_tensor(logits), _as_tensor(teacher_logits)
    kd = kd_loss_fn(logits, teacher_logits, labels, normalize=False)
    return (1.0 - kd_ratio) * ce + kd_ratio * kd, num_tokens


def load_teacher(cfg: Any, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """Build ``teacher_model`` on one device, load it from ``teacher_checkpointer`` and freeze it.

    The teacher is never resumed or saved: its checkpointer only reads.

    Args:
        cfg (Any): the recipe config (``teacher_model``, ``teacher_checkpointer``).
        device (torch.device): where the teacher runs.
        dtype (torch.dtype): its dtype.

    Returns:
        nn.Module: the frozen teacher.
    """
    from torchtune import config  # deferred: torchtune.config imports torchtune.training
    from torchtune.training._model_state import load_model_state_dict
    from torchtune.training.checkpointing._constants import MODEL_KEY
    from torchtune.training.precision import set_default_dtype

    state_dict = config.instantiate(cfg.teacher_checkpointer).load_checkpoint()[MODEL_KEY]
    # The teacher's random init must not consume the global generator (adapters and data order).
    with torch.random.fork_rng(devices=[]), set_default_dtype(dtype), device:
        teacher = config.instantiate(cfg.teacher_model)
    load_model_state_dict(teacher, state_dict, source=str(cfg.teacher_checkpointer.get("checkpoint_dir", "")))
    return freeze_teacher(teacher)
