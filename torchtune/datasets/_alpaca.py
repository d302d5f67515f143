from functools import partial
from typing import Any, Callable, Dict, Optional, Union

from torchtune.data._message_transforms import AlpacaToMessages
from torchtune.datasets._builder_utils import maybe_pack
from torchtune.datasets._packed import PackedDataset
from torchtune.datasets._sft import SFTDataset
from torchtune.modules.transforms.tokenizers import ModelTokenizer


def alpaca_dataset(
    tokenizer: ModelTokenizer,
    *,
    source: str = "tatsu-lab/alpaca",
    column_map: Optional[Dict[str, str]] = None,
    train_on_input: bool = True,
    packed: bool = False,
    filter_fn: Optional[Callable] = None,
    split: str = "train",
    **load_dataset_kwargs: Any,
) -> Union[SFTDataset, PackedDataset]:
    """The Stanford Alpaca instruction data (52K rows of ``instruction``, ``input``, ``output``),
    or any data in the same layout (``source: json`` with ``data_files``).

    Args:
        tokenizer (ModelTokenizer): the model tokenizer.
        source (str): ``datasets.load_dataset`` source. Default ``"tatsu-lab/alpaca"``.
        column_map (Optional[Dict[str, str]]): maps ``instruction`` / ``input`` / ``output`` to
            your column names.
        train_on_input (bool): also train on the prompt. Default True.
        packed (bool): pack samples to ``tokenizer.max_seq_len``. Default False.
        filter_fn (Optional[Callable]): keep only rows for which it returns True. Default None.
        split (str): split to load. Default ``"train"``.
        **load_dataset_kwargs: passed to ``load_dataset``.

    Returns:
        Union[SFTDataset, PackedDataset]: the dataset.
    """
    ds = SFTDataset(
        source=source,
        message_transform=AlpacaToMessages(train_on_input=train_on_input, column_map=column_map),
        model_transform=tokenizer,
        filter_fn=filter_fn,
        split=split,
        **load_dataset_kwargs,
    )
    return maybe_pack(ds, tokenizer, packed)


# alpaca_dataset on the cleaned Alpaca data, which fixes empty, truncated and wrong answers of the
# original; a partial (as in torchtune), so it takes alpaca_dataset's arguments.
alpaca_cleaned_dataset = partial(alpaca_dataset, source="yahma/alpaca-cleaned")
alpaca_cleaned_dataset.__doc__ = """:func:`alpaca_dataset` with ``source="yahma/alpaca-cleaned"``."""
