import importlib
from typing import Any, List, Literal, Mapping, Optional, TypeVar

T = TypeVar("T")


def truncate(
    tokens: List[T],
    max_seq_len: int,
    eos_id: Optional[T] = None,
    truncation_type: Literal["left", "right"] = "right",
) -> List[T]:
    """Cut a sequence to ``max_seq_len``.

    Args:
        tokens (List[T]): token ids (or a parallel list such as a mask).
        max_seq_len (int): maximum length.
        eos_id (Optional[T]): if given and the sequence was cut on the right, its last element is
            replaced by ``eos_id`` so that it still ends like a complete sequence. Default None.
        truncation_type (str): ``"right"`` keeps the beginning, ``"left"`` keeps the end.
            Default ``"right"``.

    Returns:
        List[T]: the sequence itself if it fits, else a truncated copy.

    Raises:
        ValueError: on an unknown ``truncation_type`` or a non-positive ``max_seq_len``.
    """
    if truncation_type not in ("left", "right"):
        raise ValueError(f"truncation_type must be 'left' or 'right', got {truncation_type!r}")
    if max_seq_len <= 0:
        raise ValueError(f"max_seq_len must be positive, got {max_seq_len}")
    if len(tokens) <= max_seq_len:
        return tokens
    if truncation_type == "left":
        return tokens[-max_seq_len:]
    out = tokens[:max_seq_len]
    if eos_id is not None:
        out[-1] = eos_id
    return out


def get_column(sample: Mapping[str, Any], column: str, expected: Optional[str] = None) -> Any:
    """``sample[column]`` with an error that names what was expected and what exists.

    Args:
        sample (Mapping[str, Any]): one dataset row.
        column (str): the dataset column to read.
        expected (Optional[str]): the logical name the transform expects, if ``column`` was
            remapped through a ``column_map``.

    Raises:
        KeyError: if the column is missing.
    """
    try:
        return sample[column]
    except KeyError:
        via = f" (expected column {expected!r}, mapped via column_map)" if expected and expected != column else ""
        raise KeyError(
            f"Column {column!r}{via} not found in the dataset sample; available columns: {sorted(sample)}. "
            "Use column_map to map the expected columns to your dataset's."
        ) from None


def resolve_column_map(
    column_map: Optional[Mapping[str, str]], expected: List[str], transform: str
) -> dict:
    """Complete a user ``column_map`` with identity entries and reject unknown keys.

    Args:
        column_map (Optional[Mapping[str, str]]): expected column name -> dataset column name.
        expected (List[str]): the columns the transform reads.
        transform (str): the transform's name, for the error message.

    Returns:
        dict: a mapping defined for every expected column.

    Raises:
        ValueError: if ``column_map`` has a key that the transform does not read.
    """
    column_map = dict(column_map or {})
    unknown = sorted(set(column_map) - set(expected))
    if unknown:
        raise ValueError(
            f"{transform} column_map has unknown keys {unknown}; it maps the expected columns {expected} "
            "to your dataset's column names"
        )
    return {name: column_map.get(name, name) for name in expected}


def import_from_path(dotted_path: str) -> Any:
    """Import ``"package.module.Name"`` and return ``Name``.

    Raises:
        ImportError: with the path in the message if it cannot be resolved.
    """
    module_path, _, name = dotted_path.rpartition(".")
    if not module_path:
        raise ImportError(f"{dotted_path!r} is not a dotted path like 'package.module.Name'")
    try:
        module = importlib.import_module(module_path)
        return getattr(module, name)
    except (ImportError, AttributeError) as e:
        raise ImportError(f"Cannot import {dotted_path!r}: {e}") from e
