"""Process groups for data-parallel recipes: launch environment, backend, setup, teardown and errors.

Every function is safe to call in a single process. Sharding (FSDP2) lives in ``_fsdp.py`` and
moving full state dicts in and out of a sharded model in ``_distributed_state.py``.
"""
import contextlib
import os
import sys
import traceback
from datetime import timedelta
from typing import Any, Iterator, Optional, Tuple, Union

import torch
import torch.distributed as dist

from torchtune._errors import anticipated_error_types, report_anticipated
from torchtune.utils._distributed import get_world_size_and_rank

_LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE")
# Key in the job's rendezvous store claimed by the first rank that fails (see `record_rank_errors`).
_FIRST_ERROR_KEY = "torchtune/first_error"
_STORE_TIMEOUT = timedelta(seconds=5)


def is_distributed() -> bool:
    """Whether this process is one of several data-parallel ranks.

    True when ``torch.distributed`` is initialised with more than one rank, or when a launcher
    such as ``torchrun`` set ``WORLD_SIZE > 1`` together with ``MASTER_ADDR`` / ``MASTER_PORT``
    (so the recipe is about to initialise the process group).

    Returns:
        bool: True for a multi-rank run.
    """
    if not dist.is_available():
        return False
    if dist.is_initialized():
        return dist.get_world_size() > 1
    env_ready = all(k in os.environ for k in _LAUNCH_ENV)
    return env_ready and int(os.environ["WORLD_SIZE"]) > 1


def get_distributed_backend(device_type: str, offload_ops_to_cpu: bool = False) -> str:
    """The ``torch.distributed`` backend for a device type: nccl on CUDA, gloo on CPU, xccl on XPU.

    Args:
        device_type (str): ``"cuda"``, ``"cpu"``, ``"xpu"``, ...
        offload_ops_to_cpu (bool): some collectives run on CPU tensors too (FSDP CPU offload,
            asynchronous checkpointing): pair the device backend with gloo for CPU, as in
            ``"cuda:nccl,cpu:gloo"``. Default False.

    Returns:
        str: a backend string for ``init_process_group``.

    Raises:
        ValueError: for a device type without a known backend.
    """
    backends = dist.Backend.default_device_backend_map
    if device_type not in backends:
        raise ValueError(
            f"No torch.distributed backend is known for device type {device_type!r}; "
            f"known: {sorted(backends)}. Set distributed_backend in the config"
        )
    backend = backends[device_type]
    if offload_ops_to_cpu and backend != "gloo":
        return f"{device_type}:{backend},cpu:gloo"
    return backend


def init_distributed(**kwargs: Any) -> bool:
    """Initialise the default process group.

    Under a launcher (``tune run``, ``torchrun``) the rank, world size and rendezvous come from
    its environment. Without one (``python recipe.py ...``) a one-process group on an in-memory
    store is created, so a distributed recipe also runs as a plain script.

    Args:
        **kwargs: passed to ``torch.distributed.init_process_group`` (``backend``, ``timeout``...);
            ``timeout`` may also be a number of seconds.

    Returns:
        bool: True once the process group is initialised.

    Raises:
        RuntimeError: if the default process group is already initialised.
    """
    if dist.is_initialized():
        raise RuntimeError("The default torch.distributed process group is already initialised")
    if isinstance(kwargs.get("timeout"), (int, float)):
        kwargs["timeout"] = timedelta(seconds=kwargs["timeout"])
    if not all(k in os.environ for k in _LAUNCH_ENV) and "store" not in kwargs:
        kwargs.update(store=dist.HashStore(), rank=0, world_size=1)
    dist.init_process_group(**kwargs)
    return True


def set_torch_num_threads() -> None:
    """Give each process on this machine an equal share of its CPU cores for intra-op threads.

    Several ranks per machine each defaulting to every core oversubscribe the CPU; this matters
    for CPU training and for the optimizer step under FSDP CPU offload.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    torch.set_num_threads(max(1, cores // local_world_size))


def _summary(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"[:300]


def _claim_first_error(rank: int, summary: str) -> Optional[Tuple[int, str]]:
    """Record this failure in the job's store; return the first failure ``(rank, summary)``.

    None when the store cannot be reached (no process group, or its host is gone).
    """
    if not (dist.is_available() and dist.is_initialized()):
        return None
    try:
        store = dist.distributed_c10d._get_default_store()
        store.set_timeout(_STORE_TIMEOUT)  # never wait long on a job that is going down
        mine = f"{rank}\n{summary}"
        first = store.compare_set(_FIRST_ERROR_KEY, "", mine)
        first = first.decode() if isinstance(first, bytes) else first
        first_rank, _, first_summary = first.partition("\n")
        return int(first_rank), first_summary
    except Exception:  # the store is best effort: fall back to printing
        return None


def _report_error(err: BaseException) -> None:
    rank = int(os.environ.get("RANK", "0"))
    summary = _summary(err)
    first = _claim_first_error(rank, summary)
    if first is None:
        # Before the process group exists every rank runs the same code on the same config:
        # one report per machine is enough.
        if os.environ.get("LOCAL_RANK", "0") != "0":
            return
        first = (rank, summary)
    first_rank, first_summary = first
    if first_rank == rank and isinstance(err, anticipated_error_types()):
        report_anticipated(err, prefix=f"[rank{rank}] error")
    elif first_rank == rank:
        text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
        print(f"[rank{rank}] failed:\n{text}", file=sys.stderr, flush=True)
    elif first_summary == summary:
        print(f"[rank{rank}] failed with the same error as rank {first_rank} (shown above)", file=sys.stderr,
              flush=True)
    else:
        # Usually a consequence of the first failure (a peer left mid-collective): one line.
        print(f"[rank{rank}] stopped after rank {first_rank} failed: {summary}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def record_rank_errors() -> Iterator[None]:
    """Run a distributed recipe so that any failure ends the whole job quickly, reported once.

    On an exception the first rank to fail prints its traceback; other failing ranks print one
    line (the job's rendezvous store decides who was first). The process group is destroyed and
    the process exits with status 1; the launcher (``torchrun``) then stops the remaining ranks
    instead of leaving them blocked in a collective. On success the process group is destroyed.

    Example:
        >>> if __name__ == "__main__":
        ...     with training.record_rank_errors():
        ...         recipe_main()

    Raises:
        SystemExit: with status 1 after an exception.
    """
    try:
        yield
    except Exception as err:  # KeyboardInterrupt and SystemExit keep their own behaviour
        _report_error(err)
        _destroy_process_group()
        raise SystemExit(1) from None
    finally:  # also after a SystemExit (a run stopped by a signal, training.TrainingStopped)
        _destroy_process_group()


def _destroy_process_group() -> None:
    if dist.is_available() and dist.is_initialized():
        with contextlib.suppress(Exception):  # teardown after a failure must not hide it
            dist.destroy_process_group()


def broadcast_object(obj: Any, src: int = 0, device: Optional[Union[str, torch.device]] = None) -> Any:
    """Send a picklable object from rank ``src`` to every rank (identity in a single process).

    Args:
        obj (Any): the object on ``src``; ignored on other ranks.
        src (int): source rank. Default 0.
        device (Optional[Union[str, torch.device]]): device for the transfer (the current CUDA
            device under nccl when None).

    Returns:
        Any: ``src``'s object on every rank.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return obj
    holder = [obj if dist.get_rank() == src else None]
    dist.broadcast_object_list(holder, src=src, device=device)
    return holder[0]
