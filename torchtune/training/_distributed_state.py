"""Full (unsharded) state dicts in and out of an FSDP2-sharded model and its optimizer.

Loading reads weights on rank 0 only and sends each tensor to the other ranks as it is placed
(``distribute_tensor`` scatters row shards), so apart from rank 0's copy of the checkpoint no rank
holds more than its shards plus one full tensor at a time. Saving all-gathers one tensor at a
time and keeps the full copy on rank 0, in CPU memory. The state dicts are in the same layout as
a single-device model's ``state_dict()`` and optimizer's ``state_dict()``, so checkpoints move
freely between single-device and distributed recipes.
"""
from typing import Any, Dict, List, NamedTuple, Optional, Tuple, Union

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.tensor import distribute_tensor, DTensor

from torchtune.modules.low_precision._nf4 import dequantize, is_nf4, to_nf4
from torchtune.training._distributed import broadcast_object, get_world_size_and_rank

# Wrapper prefixes that appear in parameter paths but not in state-dict keys.
_WRAPPER_PREFIXES = ("_checkpoint_wrapped_module.", "_orig_mod.")

Device = Union[str, torch.device]


class LoadResult(NamedTuple):
    """Keys that did not match, as ``nn.Module.load_state_dict`` reports them."""

    missing_keys: List[str]
    unexpected_keys: List[str]


def _state_dict_slots(model: nn.Module) -> Dict[str, Tuple[nn.Module, str, bool]]:
    """State-dict key -> (owning module, attribute name, is a parameter), in ``state_dict`` order."""
    slots: Dict[str, Tuple[nn.Module, str, bool]] = {}
    for prefix, module in model.named_modules():
        base = f"{prefix}." if prefix else ""
        entries = [(n, True) for n, p in module._parameters.items() if p is not None]
        entries += [(n, False) for n, b in module._buffers.items()
                    if b is not None and n not in module._non_persistent_buffers_set]
        for name, is_param in entries:
            key = base + name
            for wrapper in _WRAPPER_PREFIXES:
                key = key.replace(wrapper, "")
            slots[key] = (module, name, is_param)
    return slots


def _placed(full: Optional[torch.Tensor], like: torch.Tensor, device: Device) -> torch.Tensor:
    """``full`` (rank 0; None elsewhere) placed like ``like``: sharded, replicated, or NF4."""
    dtype = like.dtype
    if full is not None:
        src = full.detach().to(device=device, dtype=dtype)
    else:
        src = torch.empty(like.shape, dtype=dtype, device=device)
    if isinstance(like, DTensor):
        mesh, placements = like.device_mesh, like.placements
        if not is_nf4(like.to_local()):
            return distribute_tensor(src, mesh, placements, src_data_rank=0)
        # NF4 cannot be scattered: every rank receives the dense tensor, quantizes it whole (so the
        # blocks and scalers equal a single-device model's) and keeps its row block, as FSDP does.
        if mesh.ndim != 1:
            raise NotImplementedError(f"NF4 weights shard on a 1-D mesh only, got a {mesh.ndim}-D mesh")
        group = mesh.get_group(0)
        if dist.get_world_size(group) > 1:
            dist.broadcast(src, src=dist.get_global_rank(group, 0), group=group)
        local = like.to_local()  # re-quantize with the layer's own block sizes
        chunks = torch.chunk(to_nf4(src, local.block_size, local.scaler_block_size), mesh.size(), dim=0)
        return DTensor.from_local(chunks[mesh.get_local_rank()], mesh, placements, run_check=False,
                                  shape=like.shape, stride=like.stride())
    if full is not None and src.data_ptr() == full.data_ptr():
        src = src.clone()  # the model must not share memory with the caller's state dict
    if get_world_size_and_rank()[0] > 1:
        dist.broadcast(src, src=0)
    return to_nf4(src, like.block_size, like.scaler_block_size) if is_nf4(like) else src


def load_from_full_model_state_dict(
    model: nn.Module,
    full_sd: Dict[str, Any],
    device: Device,
    strict: bool = False,
    cpu_offload: bool = False,
    release_sd: bool = True,
) -> LoadResult:
    """Load a full state dict (read on rank 0) into a model sharded with ``shard_model``.

    Rank 0's ``full_sd`` is the source; other ranks may pass the same dict or an empty one.
    Each entry is cast to the parameter's dtype and placed like it: row-sharded (DTensor),
    quantized to NF4 then sharded (QLoRA base weights, quantized exactly as a single-device
    model's), or replicated (unsharded parameters and persistent buffers). Parameters and
    buffers are replaced, which fills a model built on the meta device.

    Args:
        model (nn.Module): the sharded model (activation-checkpoint wrappers are transparent).
        full_sd (Dict[str, Any]): full weights in the model's key layout (e.g. ``layers.0.attn.q_proj.weight``).
        device (Device): the training device; transfers go through it.
        strict (bool): raise on missing or unexpected keys. Default False.
        cpu_offload (bool): keep the shards in CPU memory (``shard_model(cpu_offload=True)``). Default False.
        release_sd (bool): drop each tensor from rank 0's ``full_sd`` once placed, freeing its memory. Default True.

    Returns:
        LoadResult: ``(missing_keys, unexpected_keys)``, identical on every rank.

    Raises:
        ValueError: for a shape mismatch, or missing/unexpected keys with ``strict`` (on every rank).
    """
    slots = _state_dict_slots(model)
    is_rank_zero = get_world_size_and_rank()[1] == 0
    report = None
    if is_rank_zero:
        mismatched = [
            f"{k}: checkpoint {list(v.shape)} vs model {list(getattr(slots[k][0], slots[k][1]).shape)}"
            for k, v in full_sd.items()
            if k in slots and tuple(v.shape) != tuple(getattr(slots[k][0], slots[k][1]).shape)
        ]
        report = ([k for k in slots if k not in full_sd], [k for k in full_sd if k not in slots], mismatched)
    # Every rank learns what rank 0 found, so all raise (or go on) together instead of hanging.
    missing, unexpected, mismatched = broadcast_object(report, device=_object_device(device))
    if mismatched:
        raise ValueError("Size mismatch between checkpoint and model: " + "; ".join(mismatched[:8]))
    if strict and (missing or unexpected):
        raise ValueError(
            f"State dict does not match the model: missing {missing[:8]}, unexpected {unexpected[:8]}"
            + (" (showing the first 8)" if max(len(missing), len(unexpected)) > 8 else "")
        )
    skip = set(missing)
    for key, (module, name, is_param) in slots.items():
        if key in skip:
            continue
        current = getattr(module, name)
        full = None
        if is_rank_zero:
            full = full_sd.pop(key) if release_sd else full_sd[key]
        value = _placed(full, current, device)
        if cpu_offload:
            value = value.cpu()
        if is_param:
            module._parameters[name] = nn.Parameter(value, requires_grad=current.requires_grad)
        else:
            module._buffers[name] = value
    return LoadResult(list(missing), list(unexpected))


def get_initial_adapter_state_dict(model: nn.Module) -> Dict[str, torch.Tensor]:
    """Freshly initialised adapter weights of a model built on the meta device, computed on CPU.

    Each adapter module (anything with ``adapter_params()`` and ``initialize_parameters()``, e.g.
    ``LoRALinear``) gets zero-filled CPU tensors for its adapter parameters, runs its own
    ``initialize_parameters()`` on them, and is put back on the meta device. The full values are
    returned for ``load_from_full_model_state_dict``: they do not depend on the number of ranks,
    and every rank draws the same numbers, so the random generators stay in step. Weights that
    ``initialize_parameters`` leaves alone (DoRA's ``magnitude``) come back as zeros, to be set
    once the base weights are loaded.

    Args:
        model (nn.Module): the model on the meta device (before or after wrapping/sharding).

    Returns:
        Dict[str, torch.Tensor]: adapter state-dict key -> full CPU tensor.
    """
    out: Dict[str, torch.Tensor] = {}
    for module_name, module in model.named_modules():
        if not (hasattr(module, "adapter_params") and hasattr(module, "initialize_parameters")):
            continue
        originals = []
        for rel in module.adapter_params():
            owner_path, _, leaf = rel.rpartition(".")
            owner = module.get_submodule(owner_path) if owner_path else module
            param = owner._parameters[leaf]
            originals.append((rel, owner, leaf, param))
            owner._parameters[leaf] = nn.Parameter(torch.zeros(param.shape, dtype=param.dtype, device="cpu"),
                                                   requires_grad=param.requires_grad)
        module.initialize_parameters()
        for rel, owner, leaf, param in originals:
            key = f"{module_name}.{rel}" if module_name else rel
            for wrapper in _WRAPPER_PREFIXES:
                key = key.replace(wrapper, "")
            out[key] = owner._parameters[leaf].detach()
            owner._parameters[leaf] = param
    return out


def _object_device(device: Device) -> Optional[torch.device]:
    """Device for ``broadcast_object_list``: nccl moves objects through the GPU, gloo through the CPU."""
    device = torch.device(device)
    return device if device.type != "cpu" else None


def _full_tensor(value: torch.Tensor, device: Optional[Device]) -> torch.Tensor:
    """All-gather a DTensor (dense copy of an NF4 shard first); other tensors are returned dense."""
    value = dequantize(value)  # NF4 shards become dense shards
    if not isinstance(value, DTensor):
        return value
    if device is not None:
        value = value.to(device)  # CPU-offloaded shards travel through the device's backend
    return value.full_tensor()


def gather_cpu_state_dict(
    model: nn.Module,
    is_rank_zero: bool,
    device: Optional[Device] = None,
    adapter_weights_only: bool = False,
) -> Dict[str, torch.Tensor]:
    """The full state dict of a sharded model, on rank 0's CPU.

    Every rank must call it (it all-gathers one tensor at a time). NF4 weights come back dense in
    their original dtype, as a single-device model's ``state_dict()`` returns them.

    Args:
        model (nn.Module): the sharded model.
        is_rank_zero (bool): whether this is rank 0, the one that keeps the result.
        device (Optional[Device]): device to gather through when shards live on CPU (CPU offload
            with nccl). Default None (where the shards are).
        adapter_weights_only (bool): gather only adapter parameters (LoRA/DoRA). Default False.

    Returns:
        Dict[str, torch.Tensor]: full CPU tensors on rank 0; empty on other ranks.
    """
    sharded = model.state_dict()
    if adapter_weights_only:
        from torchtune.modules.peft import get_adapter_state_dict  # deferred: peft builds on training

        sharded = get_adapter_state_dict(sharded, device=None)
    out: Dict[str, torch.Tensor] = {}
    for key, value in sharded.items():
        full = _full_tensor(value, device)
        if is_rank_zero:
            out[key] = full.detach().cpu()
    return out


def get_full_optimizer_state_dict(
    model: nn.Module, opt: torch.optim.Optimizer, is_rank_zero: bool, device: Optional[Device] = None
) -> Dict[str, Any]:
    """The optimizer state of a sharded model, gathered to rank 0's CPU.

    The result has the layout of ``opt.state_dict()`` for an unsharded model (parameter indices,
    full tensors), so a single-device recipe can resume from it and vice versa. Every rank must
    call it (it all-gathers one tensor at a time).

    Args:
        model (nn.Module): the sharded model (part of the signature for API compatibility).
        opt (torch.optim.Optimizer): its optimizer.
        is_rank_zero (bool): whether this is rank 0, the one that keeps the result.
        device (Optional[Device]): device to gather through when state lives on CPU. Default None.

    Returns:
        Dict[str, Any]: ``{"state": ..., "param_groups": ...}`` on rank 0; empty on other ranks.
    """
    sd = opt.state_dict()
    state: Dict[int, Dict[str, Any]] = {}
    for param_id, param_state in sd["state"].items():  # the same order on every rank
        entry = {}
        for name, value in param_state.items():
            if isinstance(value, DTensor):
                value = _full_tensor(value, device)
            entry[name] = value.detach().cpu() if isinstance(value, torch.Tensor) and is_rank_zero else value
        if is_rank_zero:
            state[param_id] = entry
    return {"state": state, "param_groups": sd["param_groups"]} if is_rank_zero else {}


def _is_tensor_desc(value: Any) -> bool:
    return isinstance(value, tuple) and len(value) == 3 and value[0] == "tensor"


def load_from_full_optimizer_state(
    model: nn.Module, opt: torch.optim.Optimizer, full_sd: Dict[str, Any], device: Device
) -> None:
    """Load a full optimizer state dict (read on rank 0) into the optimizer of a sharded model.

    State tensors shaped like their parameter (Adam's moments) are sharded like it; others
    (``step``) are replicated and stay on CPU, where ``torch.optim`` keeps them unless fused or
    capturable. Rank 0's ``full_sd`` is the source; other ranks may pass an empty dict.

    Args:
        model (nn.Module): the sharded model (part of the signature for API compatibility).
        opt (torch.optim.Optimizer): the optimizer over the sharded parameters.
        full_sd (Dict[str, Any]): ``opt.state_dict()`` layout with full tensors, e.g. from
            ``get_full_optimizer_state_dict`` or a single-device recipe's checkpoint.
        device (Device): the training device; transfers go through it.

    Raises:
        ValueError: if the saved parameter groups do not match the optimizer's (on every rank).
    """
    is_rank_zero = get_world_size_and_rank()[1] == 0
    skeleton = None
    if is_rank_zero:  # tensors replaced by (shape, dtype): cheap to broadcast
        skeleton = {
            "state": {
                pid: {k: ("tensor", tuple(v.shape), v.dtype) if isinstance(v, torch.Tensor) else v
                      for k, v in entry.items()}
                for pid, entry in full_sd["state"].items()
            },
            "param_groups": full_sd["param_groups"],
        }
    skeleton = broadcast_object(skeleton, device=_object_device(device))
    saved_groups = skeleton["param_groups"]
    sizes = [len(g["params"]) for g in saved_groups], [len(g["params"]) for g in opt.param_groups]
    if sizes[0] != sizes[1]:
        raise ValueError(
            f"Optimizer state has parameter groups of sizes {sizes[0]} but the optimizer has {sizes[1]}: "
            "it was saved for a different model or set of trainable parameters"
        )
    param_of = {pid: p for sg, g in zip(saved_groups, opt.param_groups) for pid, p in zip(sg["params"], g["params"])}
    state: Dict[Any, Dict[str, Any]] = {}
    for pid, entry in skeleton["state"].items():
        param = param_of[pid]
        placed = {}
        for name, desc in entry.items():
            if not _is_tensor_desc(desc):
                placed[name] = desc
                continue
            _, shape, dtype = desc
            full = full_sd["state"][pid][name] if is_rank_zero else None
            if shape == tuple(param.shape):
                value = _placed(full, param, device)  # cast to the parameter's dtype, as load_state_dict would
                placed[name] = value.to(param.device) if value.device != param.device else value
            else:
                placed[name] = _placed(full, torch.empty(shape, dtype=dtype, device="meta"), device).cpu()
        state[pid] = placed
    opt.load_state_dict({"state": state, "param_groups": saved_groups})
