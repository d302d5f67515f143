from typing import Any, Callable, Dict, List, Mapping, Optional

from datasets import Dataset, DatasetDict, load_dataset
from torch.utils.data import Dataset as TorchDataset

from torchtune._errors import DataError
from torchtune.utils import get_logger

log = get_logger()


def load_hf_dataset(
    source: str,
    split: str = "train",
    filter_fn: Optional[Callable[[Any], bool]] = None,
    **load_dataset_kwargs: Any,
) -> Dataset:
    """Load one split with ``datasets.load_dataset``.

    ``source`` is a Hub name, a local folder, or a loader (``json``, ``csv``, ``parquet``,
    ``text``) used with ``data_files=``.

    Args:
        source (str): first argument of ``load_dataset``.
        split (str): the split, slicing allowed (``"train[:10%]"``). Default ``"train"``.
        filter_fn (Optional[Callable]): keep only rows for which it returns True. Default None.
        **load_dataset_kwargs: passed to ``load_dataset`` (``data_files``, ``name``, ...).

    Returns:
        datasets.Dataset: the rows.

    Raises:
        ValueError: if the result is not a map-style dataset (``streaming=True`` or no split).
        DataError: if ``load_dataset`` cannot read the files, or no rows are left.
    """
    where = data_source_name(source, load_dataset_kwargs)
    try:
        data = load_dataset(source, split=split, **load_dataset_kwargs)
    except (FileNotFoundError, DataError):
        raise
    except Exception as err:  # datasets/pyarrow raise many types for unreadable files
        raise DataError(f"cannot read {where} with load_dataset({source!r}): {_first_line(err)}") from err
    if isinstance(data, DatasetDict):
        raise ValueError(f"load_dataset({source!r}) returned several splits {list(data)}; pass split=")
    if not isinstance(data, Dataset):
        raise ValueError(
            f"load_dataset({source!r}) returned a {type(data).__name__}; only map-style datasets are "
            "supported (streaming=True is not)"
        )
    if filter_fn is not None:
        data = data.filter(filter_fn)
    if len(data) == 0:
        raise DataError(f"{where} has no rows" + (" left after filter_fn" if filter_fn is not None else ""))
    return data


def data_source_name(source: str, load_dataset_kwargs: Mapping[str, Any]) -> str:
    """How errors name a dataset: its ``data_files`` when given, else the ``load_dataset`` source."""
    files = load_dataset_kwargs.get("data_files")
    if files is None:
        return f"dataset {source!r}"
    if isinstance(files, (list, tuple)):
        return ", ".join(map(str, files))
    return str(files)


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"[:300]


class HFRowDataset(TorchDataset):
    """Rows loaded by :func:`load_hf_dataset`, each turned into an item on access by
    ``_prepare_sample`` (subclasses define it).

    Each row is checked as it is read: the columns the message transform needs (its
    ``check_row``: present, not null, of the expected type), then the transform itself. A bad
    row raises a one-line ``DataError`` naming the file, the row index and the column. With
    ``bad_rows="skip"`` (a key of the dataset's config section, e.g. ``dataset.bad_rows=skip``)
    every row's columns are checked once when the dataset is built, and rows that fail are left
    out, with a warning giving their count and the first few indices.

    Args:
        source (str): ``load_dataset`` source.
        filter_fn (Optional[Callable]): keep only rows for which it returns True.
        bad_rows (str): ``"raise"`` (default) or ``"skip"``.
        **load_dataset_kwargs: passed to ``load_dataset`` (``split``, ``data_files``, ...).

    Raises:
        DataError: for an unreadable or empty dataset, a bad row, or ``bad_rows`` of another value.
    """

    def __init__(self, source: str, filter_fn: Optional[Callable] = None, bad_rows: str = "raise",
                 **load_dataset_kwargs: Any) -> None:
        if bad_rows not in ("raise", "skip"):
            raise DataError(f"dataset.bad_rows must be 'raise' or 'skip', got {bad_rows!r}")
        self._where = data_source_name(source, load_dataset_kwargs)
        self._data = load_hf_dataset(source, filter_fn=filter_fn, **load_dataset_kwargs)
        self._rows: Optional[List[int]] = None  # indices kept by bad_rows="skip"
        if bad_rows == "skip":
            self._rows = self._skip_bad_rows()

    def _row_problem(self, row: Mapping[str, Any]) -> Optional[DataError]:
        check = getattr(getattr(self, "_message_transform", None), "check_row", None)
        return check(row) if check is not None else None

    def _skip_bad_rows(self) -> List[int]:
        kept, bad, first_problem = [], [], None
        for index, row in enumerate(self._data):
            problem = self._row_problem(row)
            if problem is None:
                kept.append(index)
            else:
                bad.append(index)
                first_problem = first_problem or problem
        if bad:
            shown = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
            log.warning(f"{self._where}: skipped {len(bad)} of {len(self._data)} rows (bad_rows=skip): rows "
                        f"{shown}; row {bad[0]}: {first_problem}")
        if not kept:
            raise DataError(f"{self._where}: every one of its {len(self._data)} rows is bad; row 0: {first_problem}")
        return kept

    def __len__(self) -> int:
        return len(self._data) if self._rows is None else len(self._rows)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        row_index = index if self._rows is None else self._rows[index]
        row = self._data[row_index]
        problem = self._row_problem(row)
        if problem is not None:
            raise type(problem)(f"{self._where} row {row_index}: {problem} (dataset.bad_rows=skip leaves such rows out)")
        try:
            return self._prepare_sample(row)
        except DataError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
            message = err.args[0] if isinstance(err, KeyError) and err.args else err
            raise DataError(f"{self._where} row {row_index}: {type(err).__name__}: {message}") from err

    def _prepare_sample(self, sample: Mapping[str, Any]) -> Dict[str, Any]:
        raise NotImplementedError
