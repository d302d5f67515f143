from enum import Enum
from typing import Any, Dict, Optional

import torch
from torch.torch_version import TorchVersion


def get_device(device: Optional[str] = None) -> torch.device:
    """Resolve a device string, picking the best available one when None.

    Args:
        device (Optional[str]): ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or None for auto.

    Returns:
        torch.device: the device; for a bare ``"cuda"`` under torchrun, the local rank's GPU.

    Raises:
        RuntimeError: if the requested device type is not available on this machine.
    """
    import os

    if device is None:
        if torch.cuda.is_available():
            device = "cuda"
        elif torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device={device!r} was requested but CUDA is not available on this machine")
        if dev.index is None:
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(dev)
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"device={device!r} was requested but MPS is not available on this machine")
    return dev


class DeviceSupport(Enum):
    """Accelerator families the training utilities know, by ``torch.device`` type.

    Members:
        CPU: no accelerator.
        CUDA: NVIDIA (and ROCm) GPUs.
        NPU: Ascend NPUs (``torch_npu``).
        XPU: Intel GPUs.
    """

    CPU = "cpu"
    CUDA = "cuda"
    NPU = "npu"
    XPU = "xpu"


def _available(device_type: str) -> bool:
    backend = getattr(torch, device_type, None)
    return backend is not None and hasattr(backend, "is_available") and backend.is_available()


def get_device_support() -> DeviceSupport:
    """The accelerator family of this machine: CUDA, else NPU, else XPU, else CPU.

    Returns:
        DeviceSupport: the member.
    """
    for member in (DeviceSupport.CUDA, DeviceSupport.NPU, DeviceSupport.XPU):
        if _available(member.value):
            return member
    return DeviceSupport.CPU


def get_torch_device_namespace() -> any:
    """The ``torch`` sub-module of this machine's accelerator (``torch.cuda``, ``torch.xpu``...).

    Code written once against it (``synchronize()``, ``empty_cache()``...) runs on any accelerator.

    Returns:
        module: ``torch.cuda``, ``torch.npu``, ``torch.xpu``, or ``torch.cpu`` without accelerator.
    """
    return getattr(torch, get_device_support().value)


def batch_to_device(batch: dict, device: torch.device) -> None:
    """Move every tensor of a batch to ``device``, in place.

    Nested dicts and lists or tuples of tensors are followed; other values (strings, numbers) stay.

    Args:
        batch (dict): e.g. ``{"tokens": ..., "labels": ..., "mask": ...}``.
        device (torch.device): the target device.
    """

    def move(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.to(device, non_blocking=True)
        if isinstance(value, dict):
            batch_to_device(value, device)
            return value
        if isinstance(value, (list, tuple)):
            return type(value)(move(v) for v in value)
        return value

    items: Dict[Any, Any] = batch
    for key, value in items.items():
        items[key] = move(value)


def torch_version_ge(version: str) -> bool:
    """Whether the installed torch is at least ``version`` (local and dev suffixes compared properly).

    Args:
        version (str): e.g. ``"2.5.0"``.

    Returns:
        bool: True if ``torch.__version__ >= version``.
    """
    return TorchVersion(torch.__version__) >= version
