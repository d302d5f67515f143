from typing import Optional

import torch


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
