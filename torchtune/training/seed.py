"""Seeding of every random number generator a recipe touches."""
import os
import random
from typing import Optional, Union

import numpy as np
import torch
import torch.distributed as dist

_MAX_SEED = 2**32 - 1  # numpy accepts seeds in [0, 2**32)
_DEBUG_MODES = {"default": 0, "warn": 1, "error": 2}


def set_seed(seed: Optional[int] = None, debug_mode: Optional[Union[str, int]] = None) -> int:
    """Seed Python's ``random``, NumPy and torch (CPU and all accelerators).

    Every data-parallel rank uses the same seed, so model initialisation and dropout masks agree
    across ranks; ranks still see different data because the sampler splits the dataset.
    With ``seed=None`` a random seed is drawn on rank 0 and broadcast to the other ranks.

    Args:
        seed (Optional[int]): seed in ``[0, 2**32 - 1]``; random when None.
        debug_mode (Optional[Union[str, int]]): ``torch.set_deterministic_debug_mode`` setting:
            ``"default"``/0 (no checks), ``"warn"``/1 or ``"error"``/2 (warn on or refuse
            nondeterministic ops, and make cuDNN/cuBLAS deterministic). Unchanged when None.

    Returns:
        int: the seed that was used (log it to reproduce a run).

    Raises:
        ValueError: if ``seed`` is out of range or ``debug_mode`` unknown.
    """
    if seed is None:
        seed = random.SystemRandom().randint(0, _MAX_SEED)
        if dist.is_available() and dist.is_initialized():
            holder = [seed]
            dist.broadcast_object_list(holder, src=0)
            seed = holder[0]
    if not 0 <= seed <= _MAX_SEED:
        raise ValueError(f"seed={seed} is out of range: it must be in [0, {_MAX_SEED}]")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds CUDA / MPS / XPU generators
    os.environ["PYTHONHASHSEED"] = str(seed)  # for worker subprocesses
    if debug_mode is not None:
        _set_deterministic(debug_mode)
    return seed


def _set_deterministic(debug_mode: Union[str, int]) -> None:
    if isinstance(debug_mode, str):
        if debug_mode not in _DEBUG_MODES:
            raise ValueError(f"debug_mode={debug_mode!r} is not one of {list(_DEBUG_MODES)} (or 0, 1, 2)")
        level = _DEBUG_MODES[debug_mode]
    elif debug_mode in (0, 1, 2):
        level = int(debug_mode)
    else:
        raise ValueError(f"debug_mode={debug_mode!r} is not one of {list(_DEBUG_MODES)} (or 0, 1, 2)")
    torch.set_deterministic_debug_mode(level)  # levels 1 and 2 also turn on deterministic algorithms
    torch.backends.cudnn.deterministic = level > 0
    if level > 0:
        torch.backends.cudnn.benchmark = False  # autotuning picks kernels nondeterministically
        # cuBLAS is only deterministic with a fixed workspace configuration.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
