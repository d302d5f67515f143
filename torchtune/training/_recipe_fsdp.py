"""FSDP2 wiring of the distributed fine-tuning recipes: sharding plan from config, buffers, gathering."""

from functools import partial
from typing import Any, Dict, Optional, Tuple

import torch
from omegaconf import DictConfig
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy

from torchtune.training._distributed_state import gather_cpu_state_dict, get_full_optimizer_state_dict
from torchtune.training._fsdp import get_shard_conditions, shard_model, validate_no_params_on_meta_device
from torchtune.training.precision import get_dtype, set_default_dtype


def shard_from_config(cfg: DictConfig, model: torch.nn.Module, device: torch.device, world_size: int, *,
                      shard_output: bool = False) -> None:
    """Shard a model with FSDP2 over all ranks: one unit per transformer layer, plus ``custom_sharded_layers``.

    Reads ``fsdp_param_dtype`` / ``fsdp_reduce_dtype`` (mixed precision, default none),
    ``custom_sharded_layers`` (default none), ``fsdp_cpu_offload`` (False) and
    ``fsdp_reshard_after_forward`` (True).

    Args:
        cfg (DictConfig): the recipe config.
        model (torch.nn.Module): the model (on the meta device).
        device (torch.device): this rank's device.
        world_size (int): number of ranks of the 1-D data-parallel mesh.
        shard_output (bool): make ``output`` its own unit: a loss that calls ``model.output``
            itself, after the forward (``SFTLoss``), then gathers it around each call. Default False.
    """
    mesh = init_device_mesh(device.type, (world_size,), mesh_dim_names=("dp",))
    param_dtype, reduce_dtype = cfg.get("fsdp_param_dtype", None), cfg.get("fsdp_reduce_dtype", None)
    mp_policy = MixedPrecisionPolicy(
        param_dtype=get_dtype(param_dtype, device) if param_dtype else None,
        reduce_dtype=get_dtype(reduce_dtype, device) if reduce_dtype else None,
    )
    names = list(cfg.get("custom_sharded_layers", None) or [])
    if shard_output and "output" not in names:
        names.append("output")
    shard_model(
        model,
        [partial(get_shard_conditions, names_to_match=names)],
        cpu_offload=cfg.get("fsdp_cpu_offload", False),
        reshard_after_forward=cfg.get("fsdp_reshard_after_forward", True),
        dp_mesh=mesh,
        mp_policy=mp_policy,
    )


def init_meta_buffers(model: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> None:
    """Compute the non-persistent buffers (RoPE tables) that meta-device construction skipped.

    Args:
        model (torch.nn.Module): the model, its weights loaded.
        device (torch.device): where the buffers go.
        dtype (torch.dtype): default dtype while computing them.

    Raises:
        RuntimeError: if a parameter or buffer is still on the meta device afterwards.
    """
    with set_default_dtype(dtype), device:
        for m in model.modules():
            if hasattr(m, "rope_init"):
                m.rope_init()
    validate_no_params_on_meta_device(model)


def gather_for_checkpoint(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    *,
    is_rank_zero: bool,
    with_optimizer: bool,
    cpu_offload: bool = False,
    adapter_weights_only: bool = False,
) -> Tuple[Optional[Dict[str, Any]], Optional[Dict[str, Any]]]:
    """Gather the full weights (and optimizer state) of a sharded model to rank 0, on CPU.

    Every rank must call it (the gathers are collectives).

    Args:
        model (torch.nn.Module): the FSDP2-sharded model.
        optimizer (torch.optim.Optimizer): its optimizer.
        device (torch.device): this rank's device (used for the gathers under CPU offload).
        is_rank_zero (bool): whether this is rank 0, which receives the result.
        with_optimizer (bool): also gather the optimizer state (intermediate checkpoints).
        cpu_offload (bool): the shards live on CPU (``fsdp_cpu_offload``). Default False.
        adapter_weights_only (bool): gather only the adapter weights. Default False.

    Returns:
        Tuple[Optional[Dict[str, Any]], Optional[Dict[str, Any]]]: the model state dict and the
        optimizer state dict (None when not ``with_optimizer``); empty or None off rank 0.
    """
    gather_device = device if cpu_offload else None
    kwargs = {"adapter_weights_only": True} if adapter_weights_only else {}
    model_sd = gather_cpu_state_dict(model, is_rank_zero, device=gather_device, **kwargs)
    opt_sd = None
    if with_optimizer:
        opt_sd = get_full_optimizer_state_dict(model, optimizer, is_rank_zero, device=gather_device)
    return model_sd, opt_sd


def init_distributed_from_config(cfg: DictConfig) -> None:
    """Start the process group of a distributed recipe from its config, before anything else can fail.

    Reads ``device``, ``distributed_backend`` (default: nccl on CUDA, gloo on CPU), ``fsdp_cpu_offload``
    and ``distributed_timeout_s``. On CPU (or with CPU offload) each rank gets an equal share of the
    machine's cores, as ranks on one machine share them.

    Args:
        cfg (DictConfig): the recipe config.

    Raises:
        RuntimeError: if the config asks for CUDA and none is available (before nccl fails to start).
    """
    from torchtune import utils  # deferred: torchtune.utils is imported after torchtune.training here
    from torchtune.training._distributed import get_distributed_backend, init_distributed, set_torch_num_threads

    device_type = torch.device(cfg.device).type if cfg.get("device") else utils.get_device().type
    if device_type == "cuda" and not torch.cuda.is_available():
        utils.get_device(cfg.device)  # raises "CUDA is not available"
    backend = cfg.get("distributed_backend", None) or get_distributed_backend(
        device_type, offload_ops_to_cpu=cfg.get("fsdp_cpu_offload", False)
    )
    init_distributed(backend=backend, timeout=cfg.get("distributed_timeout_s", None))
    if device_type == "cpu" or cfg.get("fsdp_cpu_offload", False):
        set_torch_num_threads()
