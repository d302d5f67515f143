"""Training precision: config strings to dtypes, hardware checks and a default-dtype context."""
import contextlib
import functools
import logging
from typing import Generator, Iterable, List, Optional, Tuple, Union

import torch

_log = logging.getLogger("torchtune")

PRECISION_STR_TO_DTYPE = {
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
    "fp32": torch.float32,
    "fp64": torch.float64,
}


def verify_bf16_support(device: Optional[Union[str, torch.device]] = None) -> bool:
    """Whether ``device`` can run bf16 kernels.

    Args:
        device (Optional[Union[str, torch.device]]): device to check; CUDA if available when None,
            otherwise the CPU.

    Returns:
        bool: True on CPU (bf16 is emulated where the ISA lacks it), on CUDA GPUs that report
        bf16 support (Ampere or newer) and on MPS with macOS 14 or newer.
    """
    device = _resolve_device(device)
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "mps":
        mps = torch.backends.mps
        return mps.is_available() and getattr(mps, "is_macos_or_newer", lambda *_: False)(14, 0)
    if device.type == "xpu":
        return hasattr(torch, "xpu") and torch.xpu.is_available()
    return False


@functools.lru_cache(maxsize=None)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 matrix instructions (AVX-512-BF16 or AMX).

    Without them (for example on AVX2-only CPUs), PyTorch emulates bf16 matmuls; on such a CPU
    (AMD EPYC, AVX2) we measured a 1024^3 bf16 matmul at about 1 GFLOP/s against about
    115 GFLOP/s in fp32, so bf16 training there is one to two orders of magnitude slower than fp32.

    Returns:
        bool: True when the CPU reports AVX-512-BF16 or AMX tiles.
    """
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def get_dtype(
    dtype: Optional[Union[str, torch.dtype]] = None,
    device: Optional[Union[str, torch.device]] = None,
    *,
    allow_fp16: bool = False,
) -> torch.dtype:
    """Turn a config precision such as ``"bf16"`` into a ``torch.dtype`` usable on ``device``.

    Full fp16 training diverges without loss scaling, which the recipes do not do, so fp16 is
    refused unless ``allow_fp16`` is set (e.g. by an inference recipe).

    Args:
        dtype (Optional[Union[str, torch.dtype]]): ``"fp32"``, ``"bf16"``, ``"fp16"``, ``"fp64"``
            or a ``torch.dtype``; fp32 when None.
        device (Optional[Union[str, torch.device]]): the training device, to check bf16 support.
        allow_fp16 (bool): accept fp16. Default False.

    Returns:
        torch.dtype: the dtype.

    Raises:
        ValueError: for an unknown precision string, or fp16 without ``allow_fp16``.
        RuntimeError: if bf16 is requested on a device without bf16 support.
    """
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        torch_dtype = dtype
    elif dtype in PRECISION_STR_TO_DTYPE:
        torch_dtype = PRECISION_STR_TO_DTYPE[dtype]
    else:
        raise ValueError(f"dtype={dtype!r} is not supported; use one of {sorted(PRECISION_STR_TO_DTYPE)}")
    if torch_dtype not in PRECISION_STR_TO_DTYPE.values():
        raise ValueError(f"dtype={torch_dtype} is not a floating-point training precision")
    if torch_dtype == torch.float16 and not allow_fp16:
        raise ValueError(
            "dtype=fp16 is not supported for training: full fp16 overflows without loss scaling. "
            "Use dtype=bf16 (or fp32 on hardware without bf16)"
        )
    if torch_dtype == torch.bfloat16 and _resolve_device(device).type == "cpu" and not cpu_has_native_bf16():
        _log.warning(
            "dtype=bf16 on a CPU without bf16 matrix instructions (no AVX-512-BF16 or AMX; torch reports "
            f"{torch.backends.cpu.get_cpu_capability()}): bf16 matmuls are emulated here and run one to two "
            "orders of magnitude slower than fp32. Use dtype=fp32 on this machine"
        )
    if torch_dtype == torch.bfloat16 and not verify_bf16_support(device):
        raise RuntimeError(
            f"dtype=bf16 was requested but {_resolve_device(device)} does not support bf16 "
            "(CUDA needs an Ampere or newer GPU, MPS needs macOS 14). Set dtype=fp32"
        )
    return torch_dtype


@contextlib.contextmanager
def set_default_dtype(dtype: torch.dtype) -> Generator[None, None, None]:
    """Context manager that makes ``dtype`` the default for new floating-point tensors.

    Building a model inside it allocates parameters directly in ``dtype`` instead of
    allocating fp32 and casting (which would briefly need both copies).

    Args:
        dtype (torch.dtype): a floating-point dtype.

    Example:
        >>> with set_default_dtype(torch.bfloat16):
        ...     layer = torch.nn.Linear(4, 4)
        >>> layer.weight.dtype
        torch.bfloat16
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def validate_expected_param_dtype(
    named_params: Iterable[Tuple[str, torch.nn.Parameter]],
    dtype: torch.dtype,
    exclude_param_names: Optional[List[str]] = None,
) -> None:
    """Check that every parameter has ``dtype``.

    Args:
        named_params (Iterable[Tuple[str, torch.nn.Parameter]]): e.g. ``model.named_parameters()``.
        dtype (torch.dtype): the expected dtype.
        exclude_param_names (Optional[List[str]]): parameters whose name contains any of these
            substrings are not checked (e.g. ``["norm"]`` for norms kept in fp32). Default None.

    Raises:
        ValueError: naming the first checked parameter with another dtype.
    """
    excluded = exclude_param_names or []
    for name, param in named_params:
        if any(part in name for part in excluded):
            continue
        if param.dtype != dtype:
            raise ValueError(f"Parameter {name!r} has dtype {param.dtype}, expected {dtype}")


def _resolve_device(device: Optional[Union[str, torch.device]]) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
