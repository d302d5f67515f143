"""Components of the fine-tuning recipes built from config: loss, LR scheduler, profiler; one loss step."""

from typing import Any, ContextManager, Dict, Iterable, Optional, Tuple

import torch
from omegaconf import DictConfig, OmegaConf
from torch.distributed.tensor import DTensor

from torchtune import config
from torchtune.modules.loss import CEWithChunkedOutputLoss, LinearCrossEntropyLoss, SFTLoss
from torchtune.training._compile import compile_loss
from torchtune.training._grad_accumulation import count_trained_tokens, shift_labels
from torchtune.training._padding_free import remove_padding
from torchtune.training._profiler import DummyProfiler
from torchtune.training.checkpointing._constants import LR_SCHEDULER_KEY
from torchtune.training.memory import get_memory_stats, log_memory_stats
from torchtune.utils import get_logger

log = get_logger()

_DEFAULT_PROFILER = "torchtune.training.setup_torch_profiler"
# Rows per chunk of the fused output projection + loss that replaces CEWithChunkedOutputLoss: large
# enough for efficient matmuls, and about 10 * 256 * vocab bytes of loss memory whatever the batch.
FUSED_LOSS_CHUNK_SIZE = 256


def setup_metric_logger(cfg: DictConfig, enabled: bool = True) -> Any:
    """Build the ``metric_logger`` of a config and log the config to it.

    Args:
        cfg (DictConfig): the recipe config.
        enabled (bool): False off rank 0, where nothing is logged. Default True.

    Returns:
        Any: the logger, or None when not ``enabled``.
    """
    if not enabled:
        return None
    metric_logger = config.instantiate(cfg.metric_logger)
    metric_logger.log_config(cfg)
    return metric_logger


def log_model_info(model: torch.nn.Module, device: torch.device, dtype: torch.dtype, *, world_size: int = 1,
                   log_memory: bool = False) -> None:
    """Log where the model lives and how many of its parameters train (and, on request, memory).

    Args:
        model (torch.nn.Module): the built model.
        device (torch.device): its device.
        dtype (torch.dtype): its dtype.
        world_size (int): ranks it is sharded over. Default 1.
        log_memory (bool): also log ``get_memory_stats``. Default False.
    """
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_total = sum(p.numel() for p in model.parameters())
    where = f"sharded over {world_size} rank(s) on {device.type}" if world_size > 1 else f"on {device}"
    log.info(f"Model {where} in {dtype}: {n_trainable:,} of {n_total:,} parameters trainable")
    if log_memory:
        log_memory_stats(get_memory_stats(device=device))


def fuse_chunked_output_loss(loss_fn: torch.nn.Module) -> torch.nn.Module:
    """``LinearCrossEntropyLoss(chunk_size=256)`` in place of a ``CEWithChunkedOutputLoss``.

    The same fp32 token cross-entropy (same ``ignore_index`` and reduction), with the output
    projection fused into the loss and run on trained positions only; any other loss (including
    subclasses of ``CEWithChunkedOutputLoss``) is returned as it is. The single-device SFT recipes
    use it (through ``prepare_loss``); the FSDP recipes keep the chunked loss, whose projection
    runs inside the model's forward, where the sharded (possibly tied) output weight is gathered.

    Args:
        loss_fn (torch.nn.Module): the instantiated loss.

    Returns:
        torch.nn.Module: the loss to use.
    """
    if type(loss_fn) is not CEWithChunkedOutputLoss:
        return loss_fn
    log.info(f"loss: CEWithChunkedOutputLoss runs as LinearCrossEntropyLoss(chunk_size={FUSED_LOSS_CHUNK_SIZE}), "
             "the same cross-entropy with the output projection fused into it, on trained tokens only")
    return LinearCrossEntropyLoss(num_output_chunks=loss_fn.num_output_chunks, ignore_index=loss_fn.ignore_index,
                                  reduction=loss_fn.reduction, chunk_size=FUSED_LOSS_CHUNK_SIZE)


def prepare_loss(loss_fn: torch.nn.Module, model: torch.nn.Module, *, compile: bool = False,
                 fuse_output: bool = False) -> torch.nn.Module:
    """Connect a loss to the model it trains (and compile it on request).

    An ``SFTLoss`` applies the model's output projection itself (so the model returns hidden
    states); a ``CEWithChunkedOutputLoss`` needs the model to return its logits in chunks. With
    ``fuse_output``, a ``CEWithChunkedOutputLoss`` (the loss most configs name) is replaced by
    ``LinearCrossEntropyLoss(chunk_size=256)`` with its ``ignore_index`` and reduction
    (``fuse_chunked_output_loss``): the same fp32 token cross-entropy, but the output projection
    runs only on trained positions, fused with the loss, and no logits chunk is kept for backward.

    Args:
        loss_fn (torch.nn.Module): the instantiated loss.
        model (torch.nn.Module): the decoder.
        compile (bool): compile the loss with ``training.compile_loss``. Default False.
        fuse_output (bool): allow the replacement above; for recipes that need only the loss
            (not those that read the logits, such as distillation). Default False.

    Returns:
        torch.nn.Module: the loss to call (compiled when asked).
    """
    if fuse_output and hasattr(model, "output") and hasattr(model, "skip_output_layer"):
        loss_fn = fuse_chunked_output_loss(loss_fn)
    if compile:
        loss_fn = compile_loss(loss_fn)
    if isinstance(loss_fn, SFTLoss):
        loss_fn.set_model_output(model)
    elif isinstance(loss_fn, CEWithChunkedOutputLoss):
        model.set_num_output_chunks(loss_fn.num_output_chunks)
    return loss_fn


def sft_loss_step(
    model: torch.nn.Module,
    loss_fn: torch.nn.Module,
    batch: Dict[str, torch.Tensor],
    activations_ctx: ContextManager,
    padding_free: bool = False,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Summed token cross-entropy of one micro-batch and its number of trained tokens.

    Labels are shifted here for next-token prediction (``training.shift_labels``). With
    ``padding_free``, a batch of only ``tokens`` and ``labels`` runs as one row of its real tokens
    (``training.remove_padding``): same loss and gradients, no compute on padding.

    Args:
        model (torch.nn.Module): the decoder.
        loss_fn (torch.nn.Module): a loss with ``ignore_index`` that takes ``reduction="sum"``.
        batch (Dict[str, torch.Tensor]): ``tokens`` [b, s], ``labels`` [b, s] and any other model
            inputs (``mask``, ``input_pos``); ``labels`` is popped.
        activations_ctx (ContextManager): entered around the forward (activation offloading).
        padding_free (bool): drop the padding first; only for models where
            ``training.supports_padding_free`` holds. Default False.

    Returns:
        Tuple[torch.Tensor, torch.Tensor]: the summed loss (scalar) and the trained-token count.
    """
    labels = shift_labels(batch.pop("labels"), loss_fn.ignore_index)
    num_tokens = count_trained_tokens(labels, loss_fn.ignore_index)
    if padding_free and batch.keys() == {"tokens"}:  # packed batches already carry mask / input_pos
        unpadded = remove_padding(batch["tokens"], labels, loss_fn.ignore_index)
        if unpadded is not None:
            labels = unpadded.pop("labels")
            batch = unpadded
    with activations_ctx:
        logits = model(**batch)
    return loss_fn(logits, labels, reduction="sum"), num_tokens


def clip_gradients(parameters: Iterable[torch.Tensor], max_norm: Optional[float]) -> Optional[torch.Tensor]:
    """Clip the global gradient norm, also of FSDP-sharded parameters.

    Args:
        parameters (Iterable[torch.Tensor]): the trained parameters.
        max_norm (Optional[float]): the norm to clip to; None to skip clipping.

    Returns:
        Optional[torch.Tensor]: the total norm before clipping (a plain tensor, gathered from
        shards), or None when not clipping.
    """
    if max_norm is None:
        return None
    grad_norm = torch.nn.utils.clip_grad_norm_(parameters, float(max_norm))
    return grad_norm.full_tensor() if isinstance(grad_norm, DTensor) else grad_norm


def optimizer_step(optimizer: torch.optim.Optimizer, model: torch.nn.Module,
                   clip_grad_norm: Optional[float] = None) -> Optional[torch.Tensor]:
    """Clip the gradient norm (optional), step the optimizer and drop the gradients.

    Args:
        optimizer (torch.optim.Optimizer): the optimizer.
        model (torch.nn.Module): the model whose parameters' gradients are clipped.
        clip_grad_norm (Optional[float]): the norm to clip to; None for no clipping. Default None.

    Returns:
        Optional[torch.Tensor]: the gradient norm before clipping, or None when not clipping.
    """
    grad_norm = clip_gradients(model.parameters(), clip_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm


def setup_lr_scheduler(
    cfg_lr_scheduler: Optional[DictConfig],
    optimizer: torch.optim.Optimizer,
    *,
    num_training_steps: int,
    last_epoch: int = -1,
    ckpt: Optional[Dict[str, Any]] = None,
) -> Optional[torch.optim.lr_scheduler.LRScheduler]:
    """Build the optional LR scheduler of a config (``lr_scheduler: null`` or absent: none).

    Args:
        cfg_lr_scheduler (Optional[DictConfig]): the ``lr_scheduler`` node, or None.
        optimizer (torch.optim.Optimizer): the optimizer it schedules.
        num_training_steps (int): optimizer steps of the whole run.
        last_epoch (int): index of the last step taken (``global_step - 1``). Default -1.
        ckpt (Optional[Dict[str, Any]]): when resuming, the checkpoint dict; its
            ``LR_SCHEDULER_KEY`` entry, if any, is loaded. Default None.

    Returns:
        Optional[torch.optim.lr_scheduler.LRScheduler]: the scheduler, or None.
    """
    if cfg_lr_scheduler is None:
        return None
    scheduler = config.instantiate(
        cfg_lr_scheduler, optimizer, num_training_steps=num_training_steps, last_epoch=last_epoch
    )
    if ckpt is not None and LR_SCHEDULER_KEY in ckpt:
        scheduler.load_state_dict(ckpt[LR_SCHEDULER_KEY])
    return scheduler


def setup_profiler(cfg_profiler: Optional[DictConfig]) -> Any:
    """Build the profiler of a config; without a ``profiler`` node a ``DummyProfiler``.

    A node without ``_component_`` means ``torchtune.training.setup_torch_profiler``.

    Args:
        cfg_profiler (Optional[DictConfig]): the ``profiler`` node, or None.

    Returns:
        Any: an object with ``start()``, ``step()`` and ``stop()``.
    """
    if cfg_profiler is None:
        return DummyProfiler()
    if "_component_" not in cfg_profiler:
        cfg_profiler = OmegaConf.merge({"_component_": _DEFAULT_PROFILER}, cfg_profiler)
    profiler, _ = config.instantiate(cfg_profiler)
    return profiler
