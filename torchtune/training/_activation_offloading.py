"""Activation offloading: move tensors saved for backward to host memory, bring them back in backward.

On a GPU the activations saved by autograd (layer inputs, attention outputs, MLP intermediates)
dominate training memory at long sequence lengths. Offloading copies each of them to pinned CPU
memory as it is saved (on a side stream, overlapping the forward) and copies it back when
backward needs it, at the cost of PCIe traffic. Combined with activation checkpointing only the
layer inputs are saved, so only they travel.
"""
import collections
import contextlib
import weakref
from typing import Any, ContextManager, Deque, Dict, Iterable, Optional, Set, Tuple

import torch
from torch import nn
from torch.autograd.graph import saved_tensors_hooks

from torchtune.utils._logging import get_logger

_log = get_logger()


class _Offloaded:
    """A saved tensor living in host memory, with what is needed to bring it back."""

    __slots__ = ("host", "device", "copied")

    def __init__(self, host: torch.Tensor, device: torch.device, copied: Optional[Any]) -> None:
        self.host = host
        self.device = device
        self.copied = copied  # CUDA event recorded after the device-to-host copy, if on a side stream


class NoOpManager(saved_tensors_hooks):
    """Keep saved tensors where they are; nested inside ``OffloadActivations`` it exempts a region."""

    def __init__(self) -> None:
        super().__init__(lambda t: t, lambda t: t)


class OffloadActivations(saved_tensors_hooks):
    """Context manager that offloads the tensors autograd saves during forward to CPU memory.

    Tensors already on the CPU, smaller than ``min_offload_size`` bytes, tensor subclasses
    (quantised or sharded weights), parameters and their views, and tensors sharing storage with
    ``keep_on_device`` (the model's parameters and buffers: moving weights would be pure
    overhead) stay where they are. A tensor
    saved several times in one forward (e.g. the input of the q, k and v projections) is copied once.

    Args:
        use_pin_memory (bool): copy into pinned host memory, which makes the copies asynchronous.
            Default True.
        use_streams (bool): issue the device-to-host copies on a side CUDA stream so they overlap
            with the forward. Default True.
        max_fwd_stash_size (int): with ``use_streams``, how many offloaded device tensors are kept
            alive while their copies are in flight. When one more is offloaded, the compute stream
            waits for the oldest copy and that tensor is released, so its memory can be reused safely.
            Larger values allow more overlap at the cost of memory. Default 5.
        min_offload_size (int): smallest tensor, in bytes, worth a copy. Default 1024.
        keep_on_device (Optional[Iterable[torch.Tensor]]): tensors whose storages are never offloaded.

    Raises:
        ValueError: if ``max_fwd_stash_size`` is smaller than 1.

    Example:
        >>> with OffloadActivations(keep_on_device=model.parameters()):
        ...     logits = model(tokens)
        >>> loss_fn(logits, labels).backward()
    """

    def __init__(
        self,
        use_pin_memory: bool = True,
        use_streams: bool = True,
        max_fwd_stash_size: int = 5,
        min_offload_size: int = 1024,
        keep_on_device: Optional[Iterable[torch.Tensor]] = None,
    ) -> None:
        if max_fwd_stash_size < 1:
            raise ValueError(f"max_fwd_stash_size must be at least 1, got {max_fwd_stash_size}")
        self.use_pin_memory = use_pin_memory
        self.use_streams = use_streams
        self.max_fwd_stash_size = max_fwd_stash_size
        self.min_offload_size = min_offload_size
        self._kept_storages: Set[int] = {_storage_ptr(t) for t in keep_on_device or ()}
        self._kept_storages.discard(None)
        self._streams: Dict[torch.device, torch.cuda.Stream] = {}
        # id(tensor) -> (weak reference, packed copy): dedups repeated saves within one forward.
        # The weak reference guards against a recycled id of a freed tensor.
        self._packed_this_forward: Dict[int, Tuple[weakref.ref, _Offloaded]] = {}
        # Device tensors whose side-stream copies may still be reading them, oldest first.
        self._fwd_stash: Deque[Tuple[torch.Tensor, Any]] = collections.deque()
        super().__init__(self._pack, self._unpack)

    def __enter__(self) -> "OffloadActivations":
        self._packed_this_forward.clear()
        super().__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        super().__exit__(*exc)
        while self._fwd_stash:
            self._release_oldest()
        self._packed_this_forward.clear()

    def _release_oldest(self) -> None:
        # Once the compute stream has waited for the copy, memory freed here and reused by later
        # kernels on that stream cannot be overwritten before the copy has read it.
        tensor, copied = self._fwd_stash.popleft()
        torch.cuda.current_stream(tensor.device).wait_event(copied)

    def _should_offload(self, tensor: torch.Tensor) -> bool:
        return tensor.device.type == "cuda" and self._worth_offloading(tensor)

    def _worth_offloading(self, tensor: torch.Tensor) -> bool:
        # Weights are saved as (views of) parameters; FSDP re-gathers them, so also check the type.
        base = tensor if tensor._base is None else tensor._base
        return (
            type(tensor) is torch.Tensor
            and not isinstance(base, nn.Parameter)
            and tensor.numel() * tensor.element_size() >= self.min_offload_size
            and _storage_ptr(tensor) not in self._kept_storages
        )

    def _pack(self, tensor: torch.Tensor) -> Any:
        if not self._should_offload(tensor):
            return tensor
        seen = self._packed_this_forward.get(id(tensor))
        if seen is not None and seen[0]() is tensor:
            return seen[1]
        pin = self.use_pin_memory and tensor.is_cuda
        host = torch.empty_like(tensor, device="cpu", pin_memory=pin)
        copied = None
        if self.use_streams and tensor.is_cuda:
            stream = self._side_stream(tensor.device)
            stream.wait_stream(torch.cuda.current_stream(tensor.device))  # the tensor must be computed
            with torch.cuda.stream(stream):
                host.copy_(tensor, non_blocking=pin)
                copied = torch.cuda.Event()
                copied.record(stream)
            # The caching allocator must not hand the tensor's memory out before the copy read it:
            # keep the tensor alive in the stash until the compute stream has waited for its copy.
            self._fwd_stash.append((tensor, copied))
            while len(self._fwd_stash) > self.max_fwd_stash_size:
                self._release_oldest()
        else:
            host.copy_(tensor, non_blocking=pin)
        packed = _Offloaded(host, tensor.device, copied)
        self._packed_this_forward[id(tensor)] = (weakref.ref(tensor), packed)
        return packed

    def _unpack(self, packed: Any) -> torch.Tensor:
        if not isinstance(packed, _Offloaded):
            return packed
        if packed.copied is not None:
            torch.cuda.current_stream(packed.device).wait_event(packed.copied)
        return packed.host.to(packed.device, non_blocking=packed.host.is_pinned())

    def _side_stream(self, device: torch.device) -> "torch.cuda.Stream":
        if device not in self._streams:
            self._streams[device] = torch.cuda.Stream(device)
        return self._streams[device]


def get_act_offloading_ctx_manager(model: nn.Module, enable_activation_offloading: bool) -> ContextManager:
    """The context manager a recipe wraps its model forward in.

    Offloading only pays on CUDA: on CPU (and MPS, whose memory is shared with the host) the
    activations already live in host memory, so a no-op context is returned and that is logged.
    The output projection's saved input is kept on the GPU because backward needs it first.

    Args:
        model (nn.Module): the model (its parameters and buffers are never offloaded).
        enable_activation_offloading (bool): the config flag.

    Returns:
        ContextManager: ``OffloadActivations`` or a no-op context, reusable across steps.
    """
    if not enable_activation_offloading:
        return contextlib.nullcontext()
    device = next(model.parameters()).device
    if device.type != "cuda":
        _log.info(f"Activation offloading has no effect on {device.type}: activations already live in host memory")
        return contextlib.nullcontext()
    ctx = OffloadActivations(keep_on_device=[*model.parameters(), *model.buffers()])
    output = getattr(model, "output", None)
    if isinstance(output, nn.Module):
        keep = NoOpManager()
        output.register_forward_pre_hook(lambda *_: keep.__enter__())
        output.register_forward_hook(lambda *_: keep.__exit__(None, None, None), always_call=True)
    return ctx


def _storage_ptr(tensor: torch.Tensor) -> Optional[int]:
    try:
        return tensor.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):  # tensor subclasses without a plain storage
        return None
