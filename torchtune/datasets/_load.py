from typing import Any, Callable, Dict, Mapping, Optional

from datasets import Dataset, DatasetDict, load_dataset
from torch.utils.data import Dataset as TorchDataset


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
    """
    data = load_dataset(source, split=split, **load_dataset_kwargs)
    if isinstance(data, DatasetDict):
        raise ValueError(f"load_dataset({source!r}) returned several splits {list(data)}; pass split=")
    if not isinstance(data, Dataset):
        raise ValueError(
            f"load_dataset({source!r}) returned a {type(data).__name__}; only map-style datasets are "
            "supported (streaming=True is not)"
        )
    if filter_fn is not None:
        data = data.filter(filter_fn)
    return data


class HFRowDataset(TorchDataset):
    """Rows loaded by :func:`load_hf_dataset`, each turned into an item on access by
    ``_prepare_sample`` (subclasses define it).

    Args:
        source (str): ``load_dataset`` source.
        filter_fn (Optional[Callable]): keep only rows for which it returns True.
        **load_dataset_kwargs: passed to ``load_dataset`` (``split``, ``data_files``, ...).
    """

    def __init__(self, source: str, filter_fn: Optional[Callable] = None, **load_dataset_kwargs: Any) -> None:
        self._data = load_hf_dataset(source, filter_fn=filter_fn, **load_dataset_kwargs)

    def __len__(self) -> int:
        return len(self._data)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        return self._prepare_sample(self._data[index])

    def _prepare_sample(self, sample: Mapping[str, Any]) -> Dict[str, Any]:
        raise NotImplementedError
