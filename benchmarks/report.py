"""The header every benchmark result is written with, and the file it is written to.

A table quoted in the docs must say where it came from: :func:`write_report` puts the git commit
(and whether the working tree had uncommitted changes), the exact command line, the CPU model and
the instruction-set flags that decide which kernels run (AVX2, AVX-512F, AVX-512-BF16, AMX), the
torch version, thread counts and the load average before and after the run above the table,
and saves it as Markdown (``benchmarks/results/<script>.md`` by default).

Usage in a benchmark script::

    import report
    started = report.start()          # load average and time before the run
    ...
    report.write_report(args.out or report.default_path(__file__), "LoRA step ablation", table, started)
"""

import datetime
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterable, List, Optional

import torch

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
# /proc/cpuinfo flags that decide which matmul / attention kernels this CPU can use.
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
ENV_VARS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS", "KMP_AFFINITY")


def _git(*args: str) -> Optional[str]:
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state() -> Dict[str, object]:
    """The checkout's commit and its uncommitted changes to tracked files.

    Returns:
        Dict[str, object]: ``commit`` (40 hex digits, or ``"unknown"`` outside a git checkout),
        ``dirty`` (bool) and ``changed`` (paths of modified tracked files).
    """
    commit = _git("rev-parse", "HEAD") or "unknown"
    changed = (_git("diff", "--name-only", "HEAD") or "").splitlines()  # staged or not
    return {"commit": commit, "dirty": bool(changed), "changed": changed}


def cpu_info() -> Dict[str, object]:
    """CPU model name and which of :data:`CPU_FLAGS` it has (Linux ``/proc/cpuinfo``).

    Returns:
        Dict[str, object]: ``model`` (str) and ``flags`` (dict flag -> bool).
    """
    model, flags = None, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model is None:
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {"model": model or platform.processor() or "unknown", "flags": {f: f in flags for f in CPU_FLAGS}}


def command_line() -> str:
    """The command that started this process, as it can be pasted into a shell."""
    script = Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(REPO)
    except ValueError:
        pass
    return shlex.join(["python", str(script), *sys.argv[1:]])


def start() -> Dict[str, object]:
    """What to record before a run: UTC start time and 1-minute load average."""
    return {"started": datetime.datetime.now(datetime.timezone.utc), "load_before": os.getloadavg()[0]}


def header(title: str, started: Optional[Dict[str, object]] = None) -> List[str]:
    """Markdown lines describing where a result came from.

    Args:
        title (str): the heading, e.g. ``"LoRA step ablation"``.
        started (Optional[Dict[str, object]]): what :func:`start` returned before the run; gives the
            start time and the load average before it. Default None.

    Returns:
        List[str]: the heading and a bullet list (commit, command, CPU, torch, threads, load).
    """
    git, cpu = git_state(), cpu_info()
    dirty = "no"
    if git["dirty"]:
        shown = ", ".join(git["changed"][:8]) + (", ..." if len(git["changed"]) > 8 else "")
        dirty = f"yes, {len(git['changed'])} modified tracked file(s): {shown}"
    flags = ", ".join(f"{f} {'yes' if has else 'no'}" for f, has in cpu["flags"].items())
    env = ", ".join(f"{v}={os.environ[v]}" for v in ENV_VARS if v in os.environ) or "none set"
    load = f"{os.getloadavg()[0]:.2f} after"
    if started:
        load = f"{started['load_before']:.2f} before, " + load
    when = (started or {}).get("started") or datetime.datetime.now(datetime.timezone.utc)
    return [
        f"### {title}",
        "",
        f"- commit: `{git['commit']}` (uncommitted changes: {dirty})",
        f"- command: `{command_line()}`",
        f"- CPU: {cpu['model']}, {len(os.sched_getaffinity(0))} usable cores; {flags}; "
        f"torch CPU capability {torch.backends.cpu.get_cpu_capability()}",
        f"- torch {torch.__version__}, {torch.get_num_threads()} threads; Python {platform.python_version()}; "
        f"thread env: {env}",
        f"- started {when:%Y-%m-%d %H:%M} UTC; 1-min load average {load}",
    ]


def default_path(script: str) -> Path:
    """``benchmarks/results/<script stem>.md``."""
    return RESULTS_DIR / f"{Path(script).stem}.md"


def write_report(path: Path, title: str, table: str, started: Optional[Dict[str, object]] = None,
                 notes: Iterable[str] = ()) -> Path:
    """Write ``header(title)``, the table and notes to ``path`` as Markdown, and print them.

    Args:
        path (Path): output file; parent folders are created.
        title (str): heading of the result.
        table (str): the Markdown table the script computed.
        started (Optional[Dict[str, object]]): what :func:`start` returned. Default None.
        notes (Iterable[str]): extra lines after the table (settings, per-repeat figures). Default ().

    Returns:
        Path: ``path``.
    """
    text = "\n".join([*header(title, started), "", table.rstrip(), *(["", *notes] if notes else [])]) + "\n"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"\n{text}\n(written to {path})", flush=True)
    return path
