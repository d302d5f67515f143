"""The one place that talks to torchao's NF4 tensor (QLoRA's 4-bit NormalFloat weights).

torchao moved the NF4 tensor between releases; it is imported lazily (importing torchao takes
seconds) and from the newest location first.
"""

import functools
from types import ModuleType
from typing import Any, Dict

import torch

# torchao's defaults: 64 weights share one absmax scaler; 256 scalers share one second-level factor.
NF4_BLOCK_SIZE = 64
NF4_SCALER_BLOCK_SIZE = 256


@functools.lru_cache(maxsize=1)
def _nf4_module() -> ModuleType:
    try:  # torchao >= 0.16
        from torchao.quantization.quantize_.workflows.nf4 import nf4_tensor
    except ImportError:
        try:  # older torchao
            from torchao.dtypes import nf4tensor as nf4_tensor
        except ImportError as e:
            raise ImportError(
                "QLoRA (quantize_base=True) needs torchao's NF4 tensor; install torchao>=0.16"
            ) from e
    return nf4_tensor


def is_nf4(tensor: Any) -> bool:
    """Whether ``tensor`` is a torchao NF4 tensor."""
    if type(tensor).__name__ != "NF4Tensor":
        return False  # avoids importing torchao for every plain tensor
    return isinstance(tensor, _nf4_module().NF4Tensor)


def dequantize(tensor: torch.Tensor) -> torch.Tensor:
    """The dense weight an NF4 tensor stands for, in its original dtype; other tensors unchanged.

    A DTensor whose shard is NF4 (an FSDP-sharded QLoRA weight) becomes a DTensor of dense
    shards with the same placement: 4-bit blocks never straddle shards, so each shard
    dequantizes on its own.
    """
    if is_nf4(tensor):
        return tensor.get_original_weight()
    if type(tensor).__name__ == "DTensor" and is_nf4(tensor.to_local()):
        from torch.distributed.tensor import DTensor  # deferred: only sharded models get here

        return DTensor.from_local(tensor.to_local().get_original_weight(), tensor.device_mesh, tensor.placements,
                                  run_check=False, shape=tensor.shape, stride=tensor.stride())
    return tensor


def _scaler_block_size(numel: int) -> int:
    """Largest divisor of the number of blocks that is at most torchao's default of 256.

    torchao needs the number of 64-weight blocks to be a multiple of the scaler block size.
    Every Llama projection has a multiple of 256 blocks and gets the default; smaller layers
    (test-sized models) get a smaller second-level block instead of failing.
    """
    n_blocks = numel // NF4_BLOCK_SIZE
    return max(d for d in range(1, min(NF4_SCALER_BLOCK_SIZE, n_blocks) + 1) if n_blocks % d == 0)


def to_nf4(weight: torch.Tensor) -> torch.Tensor:
    """Quantize a dense weight to a frozen NF4 tensor (4 bits per weight plus block scalers).

    The NF4 tensor remembers ``weight.dtype``; it dequantizes to any dtype on use.

    Args:
        weight (torch.Tensor): dense ``[out_dim, in_dim]`` weight.

    Returns:
        torch.Tensor: torchao ``NF4Tensor`` of the same shape, ``requires_grad=False``.

    Raises:
        ValueError: if ``weight`` is not 2-D or its size is not a multiple of 64.
    """
    if weight.dim() != 2:
        raise ValueError(f"NF4 quantization expects a 2-D weight, got shape {tuple(weight.shape)}")
    if weight.numel() % NF4_BLOCK_SIZE != 0:
        raise ValueError(
            f"NF4 quantization needs the weight size to be a multiple of {NF4_BLOCK_SIZE}, "
            f"got shape {tuple(weight.shape)}"
        )
    weight = weight.detach().contiguous()
    return _nf4_module().NF4Tensor.from_tensor(
        weight, NF4_BLOCK_SIZE, _scaler_block_size(weight.numel())
    )


def linear_nf4(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x @ weight.T`` with an NF4 weight, dequantized to ``x.dtype`` on the fly.

    Only the NF4 weight is saved for backward (the dense copy is rebuilt there), so the
    activation memory equals that of a 4-bit layer.

    Args:
        x (torch.Tensor): ``[..., in_dim]``.
        weight (torch.Tensor): NF4 ``[out_dim, in_dim]``.

    Returns:
        torch.Tensor: ``[..., out_dim]`` in ``x.dtype``.
    """
    return _nf4_module().linear_nf4(x, weight)


def _quantize_incoming_weight(
    module: torch.nn.Module, state_dict: Dict[str, Any], prefix: str, *args: Any
) -> None:
    """Load-state-dict pre-hook: quantize a dense incoming ``weight`` and install it.

    Loading a bf16/fp32 checkpoint into a QLoRA model then works with ``load_state_dict``
    (also with ``assign=True``), and the weight keeps the module's dtype. The new NF4 tensor
    replaces the parameter rather than being copied into it: after ``to_empty()`` torchao's
    NF4 tensors keep some inner tensors on the meta device, where a copy would be lost.
    """
    key = prefix + "weight"
    incoming = state_dict.get(key)
    if incoming is None or is_nf4(incoming) or incoming.device.type == "meta":
        return
    current = module.weight
    if incoming.shape != current.shape:
        return  # let load_state_dict report the size mismatch with its usual message
    device = incoming.device if current.device.type == "meta" else current.device
    quantized = to_nf4(incoming.to(device=device, dtype=current.dtype))
    module.weight = torch.nn.Parameter(quantized, requires_grad=False)
    state_dict[key] = module.weight  # load_state_dict then copies the tensor onto itself


def _dequantize_outgoing_weight(
    module: torch.nn.Module, state_dict: Dict[str, Any], prefix: str, *args: Any
) -> None:
    """State-dict post-hook: return the NF4 ``weight`` dense, in its original dtype, on CPU.

    Checkpoints stay in the ordinary dense layout (safetensors cannot store NF4), and the
    dense copy goes to CPU so saving never holds a dense copy of every layer on the accelerator.
    """
    key = prefix + "weight"
    weight = state_dict.get(key)
    if weight is not None and is_nf4(weight):
        state_dict[key] = dequantize(weight).cpu()


def register_nf4_state_dict_hooks(module: torch.nn.Module) -> None:
    """Make ``module.weight`` (NF4) load from and save to dense state dicts.

    Args:
        module (torch.nn.Module): a module whose ``weight`` is an NF4 tensor.
    """
    module.register_load_state_dict_pre_hook(_quantize_incoming_weight)
    module.register_state_dict_post_hook(_dequantize_outgoing_weight)
