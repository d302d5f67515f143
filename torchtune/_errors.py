"""Anticipated failures: errors a user fixes from the message alone (``tune`` prints them on one line).

Every class here also derives from the built-in type code has always caught (``ValueError``,
``FileNotFoundError``, ``KeyError``), so ``except ValueError`` around a checkpoint load keeps
working. ``tune`` (and every recipe run through ``@config.parse``) prints an anticipated
failure as ``error: <message>`` without a traceback and exits with status 1; set
``TUNE_DEBUG=1`` (or pass ``tune --debug``) to see the traceback too. Any other exception is a
bug, and keeps its traceback.

This module imports nothing heavy (no torch), so the CLI can use it before torch is loaded.
"""

import os
from typing import Tuple, Type

DEBUG_ENV = "TUNE_DEBUG"


class TorchtuneError(Exception):
    """Base of the anticipated failures: bad config, checkpoint, tokenizer, data or resume state.

    The message says what failed, which key, file or row, and what was expected.
    """


class DataError(TorchtuneError, ValueError):
    """A dataset row or file is unusable (missing / null / wrong-type column, unreadable file, no rows)."""


class MissingColumnError(DataError, KeyError):
    """A dataset row lacks a column the transform reads."""

    def __str__(self) -> str:  # KeyError would print the repr of its message
        return str(self.args[0]) if self.args else ""


class CheckpointError(TorchtuneError, ValueError):
    """A checkpoint file is corrupt, truncated, of another format, or cannot be written."""


class CheckpointWriteError(TorchtuneError, OSError):
    """Writing a checkpoint failed (a full disk, no permission); the previous checkpoint is intact."""

    def __str__(self) -> str:  # OSError(errno, message) would print "[Errno 28] ..." first
        return str(self.strerror)


class CheckpointNotFoundError(TorchtuneError, FileNotFoundError):
    """A checkpoint file, shard, tokenizer or recipe state that a config names does not exist."""


class ResumeStateError(TorchtuneError, KeyError):
    """The recipe state of a resumed run lacks what resuming needs."""

    def __str__(self) -> str:  # KeyError would print the repr of its message
        return str(self.args[0]) if self.args else ""


class ModelSetupError(TorchtuneError, ValueError):
    """Model, tokenizer and data disagree (e.g. token ids beyond the model's vocabulary)."""


def anticipated_error_types() -> Tuple[Type[BaseException], ...]:
    """The exception types ``tune`` reports on one line: ``TorchtuneError`` and missing files."""
    return (TorchtuneError, FileNotFoundError)


def debug_enabled() -> bool:
    """Whether ``TUNE_DEBUG`` asks for full tracebacks of anticipated failures too."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def one_line(err: BaseException) -> str:
    """The message of ``err`` as ``tune`` prints it (a ``KeyError``'s quotes dropped)."""
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    return text or type(err).__name__


def report_anticipated(err: BaseException, prefix: str = "error") -> None:
    """Print an anticipated failure to stderr: one line, or its traceback too under ``TUNE_DEBUG``.

    Args:
        err (BaseException): the failure.
        prefix (str): what the line starts with, e.g. ``"error"`` or ``"[rank1] error"``. Default ``"error"``.
    """
    import sys
    import traceback

    if debug_enabled():
        traceback.print_exception(type(err), err, err.__traceback__, file=sys.stderr)
    hint = "" if debug_enabled() else f" (set {DEBUG_ENV}=1 for the traceback)"
    print(f"{prefix}: {one_line(err)}{hint}", file=sys.stderr, flush=True)
