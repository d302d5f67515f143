from typing import Any, Callable, Dict, Mapping, Optional, Union

from torchtune.data._utils import get_column, truncate
from torchtune.datasets._builder_utils import maybe_pack
from torchtune.datasets._load import HFRowDataset
from torchtune.datasets._packed import PackedDataset
from torchtune.modules.transforms.tokenizers import ModelTokenizer


class TextCompletionDataset(HFRowDataset):
    """Unstructured text for continued pre-training: every token is trained on.

    Args:
        tokenizer (ModelTokenizer): any tokenizer with ``encode(text, add_bos, add_eos)``;
            its ``max_seq_len``, if set, truncates each document.
        source (str): ``datasets.load_dataset`` source (``text`` with ``data_files`` reads plain
            text files, one row per line).
        column (str): the text column. Default ``"text"``.
        add_eos (bool): end each document with EOS. Default True.
        filter_fn (Optional[Callable]): keep only rows for which it returns True. Default None.
        **load_dataset_kwargs: passed to ``load_dataset`` (``split``, ``data_files``, ...).
    """

    def __init__(
        self,
        tokenizer: ModelTokenizer,
        source: str,
        column: str = "text",
        add_eos: bool = True,
        filter_fn: Optional[Callable] = None,
        **load_dataset_kwargs: Any,
    ) -> None:
        self._tokenizer = tokenizer
        self._column = column
        self.add_eos = add_eos
        super().__init__(source, filter_fn=filter_fn, **load_dataset_kwargs)

    # Set by corpus builders that take their own ``max_seq_len`` (e.g. ``wikitext_dataset``).
    _max_seq_len: Optional[int] = None

    def _prepare_sample(self, sample: Mapping[str, Any]) -> Dict[str, Any]:
        text = get_column(sample, self._column, "column")
        tokens = self._tokenizer.encode(text=text, add_bos=True, add_eos=self.add_eos)
        max_seq_len = self._max_seq_len or getattr(self._tokenizer, "max_seq_len", None)
        if max_seq_len is not None:
            # A cut document did not end here: no EOS is forced onto it.
            tokens = truncate(tokens, max_seq_len)
        return {"tokens": tokens, "labels": list(tokens)}


def text_completion_dataset(
    tokenizer: ModelTokenizer,
    source: str,
    column: str = "text",
    add_eos: bool = True,
    packed: bool = False,
    split_across_pack: bool = True,
    split: str = "train",
    filter_fn: Optional[Callable] = None,
    **load_dataset_kwargs: Any,
) -> Union[TextCompletionDataset, PackedDataset]:
    """Text completion data from any source, e.g. local text files::

        dataset:
          _component_: torchtune.datasets.text_completion_dataset
          source: text
          data_files: data/corpus.txt

    Args:
        tokenizer (ModelTokenizer): the tokenizer.
        source (str): ``datasets.load_dataset`` source.
        column (str): the text column. Default ``"text"``.
        add_eos (bool): end each document with EOS. Default True.
        packed (bool): pack samples to ``tokenizer.max_seq_len``. Default False.
        split_across_pack (bool): when packing, let a document continue in the next pack.
            Default True.
        split (str): split to load. Default ``"train"``.
        filter_fn (Optional[Callable]): keep only rows for which it returns True. Default None.
        **load_dataset_kwargs: passed to ``load_dataset``.

    Returns:
        Union[TextCompletionDataset, PackedDataset]: the dataset.
    """
    ds = TextCompletionDataset(
        tokenizer, source=source, column=column, add_eos=add_eos, filter_fn=filter_fn,
        split=split, **load_dataset_kwargs,
    )
    return maybe_pack(ds, tokenizer, packed, split_across_pack=split_across_pack)
