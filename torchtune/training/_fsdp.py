"""Sharding a model across data-parallel ranks with PyTorch's FSDP2 (``fully_shard``)."""
from typing import Callable, List, Optional, Set

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import CPUOffloadPolicy, fully_shard, MixedPrecisionPolicy, OffloadPolicy

from torchtune.modules.low_precision._nf4 import _nf4_module, is_nf4
from torchtune.training._distributed import get_world_size_and_rank
from torchtune.utils._logging import get_logger

_log = get_logger()

ShardCondition = Callable[[str, nn.Module], bool]


def get_shard_conditions(
    name: str, module: nn.Module, names_to_match: Optional[List[str]] = None, *args, **kwargs
) -> bool:
    """Default FSDP unit policy: every transformer layer, plus the modules named in ``names_to_match``.

    Layers are the entries of a ``layers`` ``ModuleList`` (paths like ``layers.3``); an activation
    checkpointing wrapper around a layer carries that path, so the wrapper is the unit.

    Args:
        name (str): the module's path in the model, e.g. ``"layers.0"`` or ``"output"``.
        module (nn.Module): the module (unused; part of the condition signature).
        names_to_match (Optional[List[str]]): extra module paths to shard as their own unit, e.g.
            ``["tok_embeddings", "output"]`` (``custom_sharded_layers`` in configs).
        *args: ignored.
        **kwargs: ignored.

    Returns:
        bool: whether ``module`` becomes its own FSDP unit.
    """
    if names_to_match and name in names_to_match:
        return True
    parts = name.split(".")
    return len(parts) >= 2 and parts[-2] == "layers" and parts[-1].isdigit()


def _nf4_shards_evenly(weight: torch.Tensor, num_shards: int) -> bool:
    """Whether torchao can split this NF4 weight into ``num_shards`` row blocks (FSDP's chunking)."""
    inner = getattr(_nf4_module(), "_INNER_TENSOR_NAMES_FOR_SHARDING",
                    ("quantized_scalers", "quantization_factor", "quantized_data"))
    return weight.shape[0] % num_shards == 0 and all(
        getattr(weight, name).numel() % num_shards == 0 for name in inner
    )


def _unshardable_nf4_params(model: nn.Module, num_shards: int) -> Set[nn.Parameter]:
    return {
        p for p in model.parameters()
        if is_nf4(p) and not p.requires_grad and not _nf4_shards_evenly(p, num_shards)
    }


def shard_model(
    model: nn.Module,
    shard_conditions: List[ShardCondition],
    *,
    cpu_offload: bool,
    reshard_after_forward: bool = True,
    dp_mesh: Optional[DeviceMesh] = None,
    mp_policy: Optional[MixedPrecisionPolicy] = None,
) -> None:
    """Shard ``model`` in place with FSDP2: each matching module is one unit, then the root.

    Units are sharded bottom-up, so a unit's parameters are all-gathered only around its own
    forward and backward. Build the model on the meta device first; the sharded parameters stay
    on meta until ``load_from_full_model_state_dict`` fills them. Frozen NF4 (QLoRA) weights are
    sharded too; one whose 4-bit blocks do not split evenly into ``dp_mesh`` shards (tiny layers)
    is kept whole on every rank instead, which is correct because frozen weights need no gradient
    reduction.

    Args:
        model (nn.Module): the model, typically on the meta device.
        shard_conditions (List[ShardCondition]): ``(name, module) -> bool``; a module matching any
            becomes an FSDP unit (see ``get_shard_conditions``).
        cpu_offload (bool): keep sharded parameters, gradients and optimizer state in CPU memory
            (``CPUOffloadPolicy``); the optimizer steps on CPU.
        reshard_after_forward (bool): free the gathered parameters after each unit's forward and
            gather again in backward (less memory, more communication). Default True.
        dp_mesh (Optional[DeviceMesh]): data-parallel mesh; FSDP's default (every rank, current
            device) when None.
        mp_policy (Optional[MixedPrecisionPolicy]): compute (``param_dtype``) and gradient
            reduction (``reduce_dtype``) dtypes; parameters' own dtypes when None.

    Raises:
        ValueError: if no module matches ``shard_conditions``, or ``cpu_offload`` is asked for
            without an accelerator (on CPU the parameters are in CPU memory already).
    """
    device_type = dp_mesh.device_type if dp_mesh is not None else (
        "cpu" if not torch.accelerator.is_available() else torch.accelerator.current_accelerator().type
    )
    if cpu_offload and device_type == "cpu":
        raise ValueError("fsdp_cpu_offload=True needs an accelerator; with device=cpu the shards already live in "
                         "CPU memory: set fsdp_cpu_offload=False")
    num_shards = dp_mesh.size() if dp_mesh is not None else get_world_size_and_rank()[0]
    ignored = _unshardable_nf4_params(model, num_shards) if num_shards > 1 else set()
    if ignored and get_world_size_and_rank()[1] == 0:
        _log.warning(
            f"{len(ignored)} NF4 weight(s) cannot be split into {num_shards} shards (too small for "
            "whole 4-bit blocks per shard); they stay unsharded on every rank"
        )
    fsdp_kwargs = {
        "reshard_after_forward": reshard_after_forward,
        "mesh": dp_mesh,
        "offload_policy": CPUOffloadPolicy() if cpu_offload else OffloadPolicy(),
        "mp_policy": mp_policy or MixedPrecisionPolicy(),
        "ignored_params": ignored or None,
    }
    units = [m for n, m in reversed(list(model.named_modules())) if any(c(n, m) for c in shard_conditions)]
    if not units:
        raise ValueError(
            f"No module of {type(model).__name__} matches the shard conditions: expected transformer "
            "layers (paths like 'layers.0') or names from custom_sharded_layers"
        )
    for module in units:
        fully_shard(module, **fsdp_kwargs)
    fully_shard(model, **fsdp_kwargs)


def validate_no_params_on_meta_device(model: nn.Module) -> None:
    """Check that every parameter and buffer was materialised after meta-device construction.

    Args:
        model (nn.Module): the model.

    Raises:
        RuntimeError: naming the parameters and buffers still on the meta device.
    """
    names = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if names:
        shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
        raise RuntimeError(f"{len(names)} tensor(s) are still on the meta device after loading: {shown}")
