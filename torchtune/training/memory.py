"""Memory statistics, pre-training cleanup and (re-exported) optimizer-in-backward helpers."""
import gc
import sys
from typing import Dict, Union

import torch

from torchtune.training._optim_in_bwd import (
    create_optim_in_bwd_wrapper,
    OptimizerInBackwardWrapper,
    register_optim_in_bwd_hooks,
)
from torchtune.utils._logging import get_logger

_log = get_logger()
_GIB = 1024**3

__all__ = [
    "OptimizerInBackwardWrapper",
    "cleanup_before_training",
    "create_optim_in_bwd_wrapper",
    "get_memory_stats",
    "log_memory_stats",
    "register_optim_in_bwd_hooks",
]


def get_memory_stats(device: Union[str, torch.device], reset_stats: bool = True) -> Dict[str, float]:
    """Memory use on ``device`` in GiB, safe to call on any device.

    Keys by device type:

    - ``cuda`` / ``xpu``: ``peak_memory_active`` (peak bytes held by live tensors),
      ``peak_memory_alloc`` (peak allocated), ``peak_memory_reserved`` (peak held by the caching
      allocator, what ``nvidia-smi`` roughly shows).
    - ``mps``: ``memory_alloc`` (currently allocated by tensors) and ``memory_driver_alloc``
      (held by the Metal driver); MPS keeps no peak.
    - anything else (CPU): ``peak_memory_rss``, the process's peak resident set size.

    Args:
        device (Union[str, torch.device]): the training device.
        reset_stats (bool): reset the accelerator's peak counters after reading, so the next call
            reports the peak since this one. The CPU peak RSS cannot be reset. Default True.

    Returns:
        Dict[str, float]: the statistics in GiB.
    """
    device = torch.device(device)
    backend = getattr(torch, device.type, None) if device.type in ("cuda", "xpu") else None
    if backend is not None and backend.is_available():
        stats = backend.memory_stats(device)
        result = {
            "peak_memory_active": stats.get("active_bytes.all.peak", 0) / _GIB,
            "peak_memory_alloc": backend.max_memory_allocated(device) / _GIB,
            "peak_memory_reserved": backend.max_memory_reserved(device) / _GIB,
        }
        if reset_stats:
            backend.reset_peak_memory_stats(device)
        return result
    if device.type == "mps" and torch.backends.mps.is_available():
        return {
            "memory_alloc": torch.mps.current_allocated_memory() / _GIB,
            "memory_driver_alloc": torch.mps.driver_allocated_memory() / _GIB,
        }
    return {"peak_memory_rss": _peak_rss_bytes() / _GIB}


def log_memory_stats(stats: Dict[str, float], message: str = "Memory stats after model init:") -> None:
    """Log the output of ``get_memory_stats`` as one readable block.

    Args:
        stats (Dict[str, float]): statistics in GiB.
        message (str): the block's first line, e.g. ``"Memory stats after generation:"``.
            Default ``"Memory stats after model init:"``.
    """
    lines = "\n".join(f"\t{name.replace('_', ' ')}: {value:.2f} GiB" for name, value in stats.items())
    _log.info(f"{message}\n{lines}")


def cleanup_before_training() -> None:
    """Free garbage left by model building so the training peak measures training only.

    Runs the Python garbage collector, returns cached accelerator blocks to the driver and resets
    the peak counters.
    """
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    if torch.backends.mps.is_available():
        torch.mps.empty_cache()
    if hasattr(torch, "xpu") and torch.xpu.is_available():
        torch.xpu.empty_cache()
        torch.xpu.reset_peak_memory_stats()


def _peak_rss_bytes() -> float:
    try:
        import resource
    except ImportError:  # Windows has no `resource`; psutil reports the peak working set there.
        import psutil

        info = psutil.Process().memory_info()
        return float(getattr(info, "peak_wset", info.rss))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return float(peak if sys.platform == "darwin" else peak * 1024)
