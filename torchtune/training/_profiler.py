"""``torch.profiler`` set up from the recipe config's ``profiler`` section."""
import os
from pathlib import Path
from typing import Any, Optional, Tuple, Union

import torch
from omegaconf import DictConfig

from torchtune.training._distributed import get_world_size_and_rank
from torchtune.utils._logging import get_logger

_log = get_logger()
DEFAULT_PROFILE_DIR = "profiler_output"
# The recipe config section holding the profiler settings.
PROFILER_KEY = "profiler"
# What ``setup_torch_profiler`` records when a setting is left unset.
DEFAULT_PROFILER_ACTIVITIES = {
    torch.profiler.ProfilerActivity.CPU,
    torch.profiler.ProfilerActivity.CUDA,
    torch.profiler.ProfilerActivity.XPU,
}
DEFAULT_SCHEDULE = {"wait_steps": 5, "warmup_steps": 5, "active_steps": 2, "num_cycles": 1}
DEFAULT_TRACE_OPTS = {"profile_memory": False, "with_stack": False, "record_shapes": True, "with_flops": False}


class DummyProfiler:
    """Stand-in used when profiling is disabled: same calls as ``torch.profiler.profile``, no work."""

    def __enter__(self) -> "DummyProfiler":
        return self

    def __exit__(self, *args: Any) -> None:
        pass

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def step(self) -> None:
        pass


def setup_torch_profiler(
    enabled: bool = False,
    cpu: bool = True,
    cuda: bool = True,
    xpu: bool = True,
    profile_memory: bool = False,
    with_stack: bool = False,
    record_shapes: bool = True,
    with_flops: bool = False,
    wait_steps: Optional[int] = None,
    warmup_steps: Optional[int] = None,
    active_steps: Optional[int] = None,
    num_cycles: Optional[int] = None,
    output_dir: Optional[str] = None,
) -> Tuple[Union[torch.profiler.profile, DummyProfiler], DictConfig]:
    """Build a profiler that records ``active_steps`` optimizer steps after ``wait + warmup`` steps.

    Call ``profiler.start()`` before training, ``profiler.step()`` after every optimizer step and
    ``profiler.stop()`` at the end. Each completed cycle writes, under
    ``output_dir/iteration_<step>/``, a Chrome/Perfetto trace ``rank<r>_trace.json``, a table of the
    most expensive ops ``rank<r>_key_averages.txt`` and, with ``profile_memory`` on CUDA, a memory
    timeline ``rank<r>_memory_timeline.html``.

    Args:
        enabled (bool): profile at all; a ``DummyProfiler`` is returned otherwise. Default False.
        cpu (bool): record CPU activity. Default True.
        cuda (bool): record CUDA kernels (dropped with a warning without CUDA). Default True.
        xpu (bool): record XPU kernels (dropped, with an info message, without XPU). Default True.
        profile_memory (bool): track tensor allocations; turns on ``with_stack`` and
            ``record_shapes``, which the memory timeline needs. Default False.
        with_stack (bool): record Python stacks (large traces). Default False.
        record_shapes (bool): record op input shapes. Default True.
        with_flops (bool): estimate FLOPs of matmuls and convolutions. Default False.
        wait_steps (Optional[int]): steps skipped at the start of a cycle. None means
            ``DEFAULT_SCHEDULE["wait_steps"]`` (5).
        warmup_steps (Optional[int]): steps traced but discarded (warms the profiler). None means
            ``DEFAULT_SCHEDULE["warmup_steps"]`` (5).
        active_steps (Optional[int]): steps recorded. None means ``DEFAULT_SCHEDULE["active_steps"]`` (2).
        num_cycles (Optional[int]): cycles of wait/warmup/active; 0 repeats until training ends. None
            means ``DEFAULT_SCHEDULE["num_cycles"]`` (1).
        output_dir (Optional[str]): where traces go; ``./profiler_output`` if None.

    Returns:
        Tuple[Union[torch.profiler.profile, DummyProfiler], DictConfig]: the profiler and the
        effective settings (after the adjustments above), for logging.

    Raises:
        ValueError: if enabled with no activity left to record or with a non-positive ``active_steps``.
    """
    if not enabled:
        return DummyProfiler(), DictConfig({"enabled": False})
    if cuda and not torch.cuda.is_available():
        _log.warning("Profiler: cuda=True but CUDA is not available; recording CPU only")
        cuda = False
    if xpu and not (hasattr(torch, "xpu") and torch.xpu.is_available()):
        # xpu defaults to True, so its absence is the common case: not worth a warning.
        _log.info("Profiler: XPU is not available; recording without it")
        xpu = False
    schedule = {
        "wait_steps": wait_steps,
        "warmup_steps": warmup_steps,
        "active_steps": active_steps,
        "num_cycles": num_cycles,
    }
    schedule = {k: DEFAULT_SCHEDULE[k] if v is None else v for k, v in schedule.items()}
    wait_steps, warmup_steps = schedule["wait_steps"], schedule["warmup_steps"]
    active_steps, num_cycles = schedule["active_steps"], schedule["num_cycles"]
    activities = [
        activity
        for wanted, activity in (
            (cpu, torch.profiler.ProfilerActivity.CPU),
            (cuda, torch.profiler.ProfilerActivity.CUDA),
            (xpu, getattr(torch.profiler.ProfilerActivity, "XPU", None)),
        )
        if wanted and activity is not None
    ]
    if not activities:
        raise ValueError("Profiler enabled but cpu, cuda and xpu are all off (or unavailable): nothing to record")
    if active_steps < 1:
        raise ValueError(f"Profiler active_steps must be >= 1, got {active_steps}")
    if profile_memory and not (with_stack and record_shapes):
        _log.info("Profiler: profile_memory needs with_stack and record_shapes; turning them on")
        with_stack = record_shapes = True
    output_dir = Path(output_dir or DEFAULT_PROFILE_DIR).expanduser()
    output_dir.mkdir(parents=True, exist_ok=True)

    def export(prof: torch.profiler.profile) -> None:
        _, rank = get_world_size_and_rank()
        step_dir = output_dir / f"iteration_{prof.step_num}"
        step_dir.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(step_dir / f"rank{rank}_trace.json"))
        sort_by = "self_cuda_time_total" if cuda else "self_cpu_time_total"
        table = prof.key_averages().table(sort_by=sort_by, row_limit=100)
        (step_dir / f"rank{rank}_key_averages.txt").write_text(table)
        if profile_memory and cuda:
            prof.export_memory_timeline(str(step_dir / f"rank{rank}_memory_timeline.html"), device=f"cuda:{rank}")
        _log.info(f"Profiler trace written to {step_dir}")

    profiler = torch.profiler.profile(
        activities=activities,
        schedule=torch.profiler.schedule(
            wait=wait_steps, warmup=warmup_steps, active=active_steps, repeat=num_cycles
        ),
        on_trace_ready=export,
        profile_memory=profile_memory,
        with_stack=with_stack,
        record_shapes=record_shapes,
        with_flops=with_flops,
    )
    settings = DictConfig(
        {
            "enabled": True,
            "output_dir": os.fspath(output_dir),
            "cpu": cpu,
            "cuda": cuda,
            "xpu": xpu,
            "profile_memory": profile_memory,
            "with_stack": with_stack,
            "record_shapes": record_shapes,
            "with_flops": with_flops,
            "wait_steps": wait_steps,
            "warmup_steps": warmup_steps,
            "active_steps": active_steps,
            "num_cycles": num_cycles,
        }
    )
    _log.info(f"Profiler enabled: {dict(settings)}")
    return profiler, settings
