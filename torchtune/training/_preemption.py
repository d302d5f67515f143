"""Stopping a training run cleanly: preemption signals, ranks agreeing on the step, the resume command.

A cluster scheduler or a preemptible VM sends SIGTERM (some send SIGUSR1 ahead of the kill, a
user presses Ctrl-C for SIGINT). ``TrainLoop`` runs inside :class:`StopSignals`: the first
signal only sets a flag, the loop finishes the optimizer step it is in, writes a mid-epoch
checkpoint (the format of ``save_every_n_steps``) and exits with status ``128 + signal``. A
second signal aborts at once, without saving; the atomic saves leave the previous checkpoint
intact even then.
"""

import os
import shlex
import signal
import sys
import threading
from types import FrameType
from typing import Dict, Optional, Tuple

import torch
import torch.distributed as dist

from torchtune._cli.run import RUN_COMMAND_ENV  # set by `tune run` to its own command line

# The signals that ask a run to checkpoint and stop.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


def _write_stderr(text: str) -> None:
    # os.write, not print: a handler may run while the main thread is inside a print to stderr.
    try:
        os.write(2, text.encode())
    except OSError:
        pass


def _is_rank_zero() -> bool:
    return os.environ.get("RANK", "0") == "0"


class TrainingStopped(SystemExit):
    """Raised by ``TrainLoop.run`` after the checkpoint of a stop signal is written.

    A ``SystemExit`` with status ``128 + signal number`` (143 for SIGTERM, as a process killed
    by it would report), so ``tune`` and shells tell a preempted run from a finished one, and no
    traceback is printed.

    Args:
        signum (int): the signal that stopped the run.
        checkpoint (Optional[str]): the folder to resume from, or None when nothing was trained.
    """

    def __init__(self, signum: int, checkpoint: Optional[str]) -> None:
        super().__init__(128 + signum)
        self.signum = signum
        self.checkpoint = checkpoint


class StopSignals:
    """Context manager that turns SIGTERM, SIGINT and SIGUSR1 into a stop request.

    On entry it installs its handlers (only in the main thread, where Python delivers signals);
    on exit the previous handlers come back. The first signal sets :attr:`signum`; a second one
    writes a line to stderr and ends the process at once with status ``128 + signal``.

    Attributes:
        signum (Optional[int]): the first signal received, or None.
    """

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._previous: Dict[int, object] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None:
            if _is_rank_zero():
                _write_stderr(f"\n{name} received again: aborting now, without saving\n")
            os._exit(128 + signum)
        self.signum = signum
        if _is_rank_zero():
            _write_stderr(f"\n{name} received: finishing the current optimizer step, then saving a checkpoint "
                          f"(send it again to abort at once)\n")


def agree_on_stop(signalled: bool, failed: bool, device: torch.device) -> Tuple[bool, bool]:
    """Whether any rank was signalled, and whether any rank failed to read its batch.

    One all-reduce (max) of two flags when a process group is up; on one process, the inputs.

    Args:
        signalled (bool): this rank received a stop signal.
        failed (bool): this rank failed to produce its next batch.
        device (torch.device): the device collectives run on (CPU under gloo).

    Returns:
        Tuple[bool, bool]: ``(any rank signalled, any rank failed)``, the same on every rank.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return signalled, failed
    flags = torch.tensor([int(signalled), int(failed)], device=device)
    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    return bool(flags[0]), bool(flags[1])


def _redact_override(arg: str) -> str:
    from torchtune.config import redact_secrets  # deferred: torchtune.config imports torchtune.training

    key, sep, value = arg.partition("=")
    if not sep or arg.startswith("-"):
        return arg
    leaf = key.rsplit(".", 1)[-1]
    return f"{key}={redact_secrets({leaf: value})[leaf]}"


def resume_command() -> str:
    """The command line that resumes this run: its own, plus ``resume_from_checkpoint=True``.

    ``tune run`` records its command line in ``TUNE_RUN_COMMAND``; a recipe started directly
    with Python gets ``python <script> <args>``. Secret-looking overrides (``hf_token=...``)
    are shown as ``<redacted>``.

    Returns:
        str: a shell-quoted command.
    """
    recorded = os.environ.get(RUN_COMMAND_ENV)
    argv = shlex.split(recorded) if recorded else [os.path.basename(sys.executable), *sys.argv]
    argv = [_redact_override(a) for a in argv if not a.lstrip("+").startswith("resume_from_checkpoint=")]
    return shlex.join([*argv, "resume_from_checkpoint=True"])


def report_stop(reason: str, checkpoint: Optional[str]) -> None:
    """Print, on rank 0, why the run stopped, where its checkpoint is and how to resume it.

    Args:
        reason (str): e.g. ``"SIGTERM"``, or the error that stopped the run.
        checkpoint (Optional[str]): the folder written (or the latest complete one), or None when
            nothing was trained yet.
    """
    if not _is_rank_zero():
        return
    if checkpoint is None:
        _write_stderr(f"Training stopped ({reason}) before the first optimizer step; nothing to save. "
                      "Run the same command again to start over.\n")
        return
    _write_stderr(f"Training stopped ({reason}). Checkpoint: {checkpoint}\nResume with:\n  {resume_command()}\n")
