"""The one place that talks to torchao's NF4 tensor (QLoRA's 4-bit NormalFloat weights).

torchao moved the NF4 tensor between releases; it is imported lazily (importing torchao takes
seconds) and from the newest location first.
"""

import functools
from types import ModuleType
from typing import Any, Dict, Optional

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


def _scaler_block_size(numel: int, block_size: int = NF4_BLOCK_SIZE) -> int:
    """Largest divisor of the number of blocks that is at most torchao's default of 256.

    torchao needs the number of ``block_size``-weight blocks to be a multiple of the scaler block
    size. Every Llama projection has a multiple of 256 blocks and gets the default; smaller layers
    (test-sized models) get a smaller second-level block instead of failing.
    """
    n_blocks = numel // block_size
    return max(d for d in range(1, min(NF4_SCALER_BLOCK_SIZE, n_blocks) + 1) if n_blocks % d == 0)


NF4_QUANTIZATION_KWARGS = ("block_size", "scaler_block_size")


def check_quantization_kwargs(quantization_kwargs: Dict[str, Any], owner: str) -> Dict[str, Any]:
    """Reject keyword arguments ``to_nf4`` does not take, naming the layer they were given to.

    Args:
        quantization_kwargs (Dict[str, Any]): e.g. ``{"block_size": 32}``.
        owner (str): the layer's class name, for the message.

    Returns:
        Dict[str, Any]: the same arguments.

    Raises:
        TypeError: naming the unknown arguments and the accepted ones.
    """
    unknown = sorted(set(quantization_kwargs) - set(NF4_QUANTIZATION_KWARGS))
    if unknown:
        raise TypeError(
            f"{owner} got unknown quantization_kwargs {unknown}; NF4 accepts {list(NF4_QUANTIZATION_KWARGS)}"
        )
    return dict(quantization_kwargs)


def to_nf4(
    weight: torch.Tensor, block_size: int = NF4_BLOCK_SIZE, scaler_block_size: Optional[int] = None
) -> torch.Tensor:
    """Quantize a dense weight to a frozen NF4 tensor (4 bits per weight plus block scalers).

    The NF4 tensor remembers ``weight.dtype``; it dequantizes to any dtype on use.

    Args:
        weight (torch.Tensor): dense ``[out_dim, in_dim]`` weight.
        block_size (int): weights sharing one absmax scaler. Default 64 (torchao's default).
        scaler_block_size (Optional[int]): scalers sharing one second-level factor. None picks
            torchao's default of 256, or the largest divisor of the number of blocks below it.

    Returns:
        torch.Tensor: torchao ``NF4Tensor`` of the same shape, ``requires_grad=False``.

    Raises:
        ValueError: if ``weight`` is not 2-D or its size is not a multiple of ``block_size``.
    """
    if weight.dim() != 2:
        raise ValueError(f"NF4 quantization expects a 2-D weight, got shape {tuple(weight.shape)}")
    if weight.numel() % block_size != 0:
        raise ValueError(
            f"NF4 quantization needs the weight size to be a multiple of {block_size}, "
            f"got shape {tuple(weight.shape)}"
        )
    weight = weight.detach().contiguous()
    if scaler_block_size is None:
        scaler_block_size = _scaler_block_size(weight.numel(), block_size)
    return _nf4_module().NF4Tensor.from_tensor(weight, block_size, scaler_block_size)


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
    # Quantized the way the layer was built (its quantization_kwargs, if any).
    quantized = to_nf4(incoming.to(device=device, dtype=current.dtype), **getattr(module, "_nf4_kwargs", {}))
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
