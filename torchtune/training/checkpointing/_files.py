"""Finding checkpoint files: user file lists, sharded name patterns, HF index files, epoch folders."""

import json
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from torchtune._errors import CheckpointError
from torchtune.training.checkpointing._constants import EPOCH_DIR_PREFIX, STEP_DIR_PREFIX

_EPOCH_DIR = re.compile(rf"^{EPOCH_DIR_PREFIX}(\d+)$")
_STEP_DIR = re.compile(rf"^{STEP_DIR_PREFIX}(\d+)$")
# Looked for, in order, when no checkpoint_files are given.
_HF_DEFAULT_FILES = (
    "model.safetensors.index.json",
    "model.safetensors",
    "pytorch_model.bin.index.json",
    "pytorch_model.bin",
)

CheckpointFiles = Union[None, str, Sequence, Mapping, "FormattedCheckpointFiles"]


class FormattedCheckpointFiles:
    """Sharded checkpoint file names given by a pattern and the last shard's number.

    ``FormattedCheckpointFiles("model-{}-of-{}.safetensors", "00004")`` stands for
    ``model-00001-of-00004.safetensors`` ... ``model-00004-of-00004.safetensors``.

    Args:
        filename_format (str): a name with two ``{}``: the shard number, then ``max_filename``.
        max_filename (str): the number of the last shard, zero-padded to the width used in the names.

    Raises:
        ValueError: if ``filename_format`` does not contain exactly two ``{}`` or ``max_filename`` is
            not made of digits.
    """

    def __init__(self, filename_format: str, max_filename: str):
        # Unquoted in YAML, "00004" arrives as the int 4; HF shard names use five digits.
        max_filename = f"{max_filename:05d}" if isinstance(max_filename, int) else str(max_filename)
        if str(filename_format).count("{}") != 2 or not max_filename.isdigit():
            raise CheckpointError(
                f"checkpoint_files.filename_format must contain two '{{}}' (got {filename_format!r}) and "
                f"max_filename must be digits such as '00004' (got {max_filename!r})"
            )
        self.filename_format = str(filename_format)
        self.max_filename = max_filename

    @staticmethod
    def from_dict(d: dict) -> "FormattedCheckpointFiles":
        """Build from the ``checkpoint_files`` config dict.

        Args:
            d (dict): exactly the keys ``filename_format`` and ``max_filename``.

        Returns:
            FormattedCheckpointFiles: the pattern.

        Raises:
            ValueError: if the keys differ, or see the class.
        """
        if set(d) != {"filename_format", "max_filename"}:
            raise CheckpointError(
                "checkpoint_files as a dict needs exactly 'filename_format' and 'max_filename', got "
                f"{sorted(d)}"
            )
        return FormattedCheckpointFiles(d["filename_format"], d["max_filename"])

    def build_checkpoint_filenames(self):
        """The file names, first shard first.

        Returns:
            List[str]: one name per shard.
        """
        width = len(self.max_filename)
        return [
            self.filename_format.format(str(i).zfill(width), self.max_filename)
            for i in range(1, int(self.max_filename) + 1)
        ]


def get_largest_iter_folder(dir: Union[str, Path], pattern: str = r"^epoch_(\d+)") -> Optional[str]:
    """The name of the sub-folder of ``dir`` whose name matches ``pattern`` with the largest number.

    Args:
        dir (Union[str, Path]): the folder to look in, e.g. a run's ``output_dir``.
        pattern (str): regular expression whose first group is the number. Default ``^epoch_(\d+)``.

    Returns:
        Optional[str]: the folder's name (not its path), or None when no sub-folder matches.
    """
    regex = re.compile(pattern)
    found = []
    for child in Path(dir).iterdir():
        match = regex.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child.name))
    return max(found)[1] if found else None


def expand_checkpoint_files(checkpoint_files: CheckpointFiles, checkpoint_dir: Path) -> List[str]:
    """Turn the ``checkpoint_files`` config value into a list of file names.

    Accepts a list of names, a single name, a ``FormattedCheckpointFiles`` or the equivalent
    ``{filename_format, max_filename}`` dict, e.g.
    ``{"filename_format": "model-{}-of-{}.safetensors", "max_filename": "00004"}``.

    Args:
        checkpoint_files (CheckpointFiles): the config value (omegaconf containers work too).
        checkpoint_dir (Path): only used in error messages.

    Returns:
        List[str]: file names (relative to ``checkpoint_dir`` unless absolute).

    Raises:
        ValueError: on a malformed dict or an empty list.
    """
    if checkpoint_files is None:
        return []
    if isinstance(checkpoint_files, str):
        return [checkpoint_files]
    if isinstance(checkpoint_files, FormattedCheckpointFiles):
        return checkpoint_files.build_checkpoint_filenames()
    if isinstance(checkpoint_files, Mapping):
        return FormattedCheckpointFiles.from_dict(dict(checkpoint_files)).build_checkpoint_filenames()
    if isinstance(checkpoint_files, Sequence):
        files = [str(f) for f in checkpoint_files]
        if not files:
            raise CheckpointError(f"checkpoint_files is empty for {checkpoint_dir}")
        return files
    raise CheckpointError(f"checkpoint_files must be a list, a file name or a dict, got {type(checkpoint_files).__name__}")


def read_index(index_path: Path) -> Dict[str, str]:
    """The ``weight_map`` (tensor name -> shard file name) of a ``*.index.json`` file."""
    if not index_path.is_file():
        raise FileNotFoundError(f"Checkpoint index not found: {index_path}")
    try:
        weight_map = json.loads(index_path.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{index_path} is not a valid checkpoint index (needs a 'weight_map'): {e}") from None
    return dict(weight_map)


def resolve_hf_files(
    checkpoint_files: CheckpointFiles, checkpoint_dir: Path
) -> Tuple[List[Path], Optional[Dict[str, str]]]:
    """Resolve HF checkpoint files, following an index file when one is named or found.

    Args:
        checkpoint_files (CheckpointFiles): the config value; empty means "find the usual names".
        checkpoint_dir (Path): folder the names are relative to.

    Returns:
        Tuple[List[Path], Optional[Dict[str, str]]]: the weight files in order, and the index's
        weight map when the files came from an index.

    Raises:
        FileNotFoundError: if a named file (or shard listed in the index) does not exist, naming it.
    """
    names = expand_checkpoint_files(checkpoint_files, checkpoint_dir)
    if not names:
        found = [n for n in _HF_DEFAULT_FILES if (checkpoint_dir / n).is_file()]
        if not found:
            raise FileNotFoundError(
                f"No checkpoint_files given and none of {list(_HF_DEFAULT_FILES)} found in {checkpoint_dir}"
            )
        names = found[:1]
    weight_map, index_path = None, None
    if len(names) == 1 and names[0].endswith(".index.json"):
        index_path = resolve_path(names[0], checkpoint_dir)
        weight_map = read_index(index_path)
        names = list(dict.fromkeys(weight_map.values()))  # shard order, deduplicated
        checkpoint_dir = index_path.parent
    paths = [resolve_path(n, checkpoint_dir) for n in names]
    for p in paths:
        if not p.is_file():
            listed = f" (listed in {index_path})" if index_path is not None else ""
            raise FileNotFoundError(f"Checkpoint shard not found: {p}{listed}")
    return paths, weight_map


def resolve_path(name: Union[str, Path], base: Path) -> Path:
    """``name`` if absolute, else ``base / name``."""
    path = Path(name)
    return path if path.is_absolute() else Path(base) / path


def epoch_dirs(output_dir: Path) -> Dict[int, Path]:
    """Complete ``epoch_{N}`` folders under ``output_dir`` (staging folders are hidden, so skipped)."""
    if not Path(output_dir).is_dir():
        return {}
    out = {}
    for child in Path(output_dir).iterdir():
        match = _EPOCH_DIR.match(child.name)
        if match and child.is_dir():
            out[int(match.group(1))] = child
    return out


def step_dirs(output_dir: Path) -> Dict[int, Path]:
    """Complete ``step_{N}`` folders (mid-epoch checkpoints) under ``output_dir``, by step."""
    if not Path(output_dir).is_dir():
        return {}
    return {
        int(child.name[len(STEP_DIR_PREFIX):]): child
        for child in Path(output_dir).iterdir()
        if child.is_dir() and _STEP_DIR.match(child.name)
    }


def prune_step_dirs(output_dir: Path, keep_last_n: int, keep: Optional[Path] = None) -> List[Path]:
    """Delete all but the newest ``keep_last_n`` ``step_{N}`` folders (never ``keep``).

    Returns:
        List[Path]: the folders removed.
    """
    if keep_last_n < 1:
        raise CheckpointError(f"keep_last_n_checkpoints must be >= 1, got {keep_last_n}")
    dirs = step_dirs(output_dir)
    removed = []
    for step in sorted(dirs)[:-keep_last_n]:
        if keep is not None and dirs[step] == keep:
            continue
        shutil.rmtree(dirs[step])
        removed.append(dirs[step])
    return removed


def pick_resume_dir(
    output_dir: Path, saved_epoch: Optional[int], saved_dir: Optional[str] = None
) -> Optional[Path]:
    """The checkpoint folder a resumed run continues from.

    Prefers the folder saved together with the recipe state (``saved_dir``, or ``epoch_{saved_epoch}``
    for states written before folders were recorded): a crash between writing a newer folder and
    its recipe state must not pair them. Otherwise the newest epoch folder.

    Args:
        output_dir (Path): the run's output folder.
        saved_epoch (Optional[int]): epoch recorded in the recipe state, if any.
        saved_dir (Optional[str]): folder name recorded in the recipe state, if any.

    Returns:
        Optional[Path]: the folder, or None when there is none.
    """
    if saved_dir is not None and (Path(output_dir) / saved_dir).is_dir():
        return Path(output_dir) / saved_dir
    dirs = epoch_dirs(output_dir)
    if saved_epoch in dirs:
        return dirs[saved_epoch]
    return dirs[max(dirs)] if dirs else None
