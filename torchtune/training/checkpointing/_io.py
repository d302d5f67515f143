"""Checked reads and atomic writes of checkpoint files.

Writes go to a temporary name in the destination folder and are renamed into place, so a crash
never leaves a half-written file (or folder) under a final name. Reads check that the file exists
and is complete, and name the file in every error.
"""

import json
import os
import shutil
import struct
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from torchtune._errors import CheckpointError

StateDict = Dict[str, torch.Tensor]


def format_size(num_bytes: int) -> str:
    """Human-readable size such as ``"1.50 GiB"``."""
    size = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.2f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    raise AssertionError("unreachable")


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint file not found: {path}")


def _check_safetensors_complete(path: Path) -> None:
    """Parse the header and compare the data it announces with the file's size."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path} is corrupt or truncated: {size} bytes, shorter than a safetensors header")
        (header_len,) = struct.unpack("<Q", head)
        if 8 + header_len > size:
            raise CheckpointError(
                f"{path} is corrupt or truncated: header announces {header_len} bytes but the file has {size}"
            )
        try:
            header = json.loads(f.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{path} is corrupt or truncated: unreadable safetensors header ({e})") from None
    try:
        data_end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (AttributeError, KeyError, TypeError, IndexError, ValueError):
        raise CheckpointError(f"{path} is corrupt or truncated: malformed safetensors header") from None
    if 8 + header_len + data_end > size:
        raise CheckpointError(
            f"{path} is corrupt or truncated: tensors need {8 + header_len + data_end} bytes, file has {size}"
        )


def load_safetensors(path: Path) -> StateDict:
    """Load a safetensors file on CPU after checking it is complete.

    Args:
        path (Path): the file.

    Returns:
        StateDict: its tensors.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if it is corrupt or truncated (the message names the file).
    """
    path = Path(path)
    _require_file(path)
    _check_safetensors_complete(path)
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path} is corrupt or truncated: {e}") from None


def torch_load(path: Path, weights_only: bool = True) -> Any:
    """``torch.load`` on CPU (``weights_only=True`` unless told otherwise), naming the file on failure.

    Args:
        path (Path): a ``.pt`` / ``.pth`` / ``.bin`` file written by ``torch.save``.
        weights_only (bool): refuse pickled objects other than tensors, containers and primitives.
            Only pass False for files you trust. Default True.

    Returns:
        Any: the loaded object (tensors, containers and Python primitives only).

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if it is corrupt or truncated, or holds objects ``weights_only`` refuses.
    """
    path = Path(path)
    _require_file(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError or EOFError depending on the damage
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            raise CheckpointError(
                f"{path} holds objects that weights_only loading refuses (store tensors, lists, "
                f"dicts and numbers only): {msg}"
            ) from None
        raise CheckpointError(f"{path} is corrupt or truncated: {msg}") from None


def load_any(path: Path, weights_only: bool = True) -> StateDict:
    """Load a state dict from ``.safetensors`` or a ``torch.save`` file (``.pt``, ``.pth``, ``.bin``).

    Args:
        path (Path): the file.
        weights_only (bool): passed to ``torch_load`` for ``torch.save`` files. Default True.

    Returns:
        StateDict: the loaded state dict.

    Raises:
        ValueError: if the file does not hold a dict (or see ``torch_load``).
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        return load_safetensors(path)
    obj = torch_load(path, weights_only=weights_only)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} does not hold a state dict (found {type(obj).__name__})")
    return obj


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _standalone(t: torch.Tensor) -> torch.Tensor:
    """A contiguous tensor that owns its storage (safetensors refuses views and shared storage)."""
    t = t.detach()
    if t.is_contiguous() and t.untyped_storage().nbytes() == t.numel() * t.element_size():
        return t
    return t.contiguous().clone()


@contextmanager
def _temp_file(final: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; rename it into place when the body succeeds."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_safetensors(state_dict: StateDict, path: Path, metadata: Optional[Dict[str, str]] = None) -> int:
    """Write tensors to ``path`` atomically; return the file size in bytes."""
    tensors = {k: _standalone(v) for k, v in state_dict.items()}
    with _temp_file(Path(path)) as tmp:
        save_file(tensors, str(tmp), metadata=metadata or {"format": "pt"})
    return Path(path).stat().st_size


def save_torch(obj: Any, path: Path) -> int:
    """``torch.save`` to ``path`` atomically; return the file size in bytes."""
    with _temp_file(Path(path)) as tmp:
        torch.save(obj, tmp)
    return Path(path).stat().st_size


def save_json(obj: Any, path: Path) -> int:
    """Write JSON to ``path`` atomically; return the file size in bytes."""
    with _temp_file(Path(path)) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    return Path(path).stat().st_size


@contextmanager
def staged_dir(final: Path) -> Iterator[Path]:
    """Build a folder under a hidden temporary name, then swap it in for ``final``.

    If the body raises, the temporary folder is removed and ``final`` (if it existed) is untouched.
    On success an existing ``final`` is moved aside, the new folder renamed into place, and the old
    one deleted, so ``final`` only ever names a complete folder.

    Args:
        final (Path): the folder to produce, e.g. ``output_dir/epoch_0``.

    Yields:
        Path: the staging folder to write into.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(final, old)
    os.rename(staging, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
