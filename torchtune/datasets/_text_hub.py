"""Builders for well-known text-completion corpora on the Hugging Face Hub (presets of
:func:`text_completion_dataset`)."""

from typing import Any, Callable, Optional, Union

from torchtune.datasets._packed import PackedDataset
from torchtune.datasets._text_completion import TextCompletionDataset, text_completion_dataset
from torchtune.modules.transforms.tokenizers import ModelTokenizer


def wikitext_dataset(
    tokenizer: ModelTokenizer,
    source: str = "EleutherAI/wikitext_document_level",
    subset: Optional[str] = "wikitext-103-v1",
    packed: bool = False,
    filter_fn: Optional[Callable] = None,
    split: str = "train",
    **load_dataset_kwargs: Any,
) -> Union[TextCompletionDataset, PackedDataset]:
    """WikiText-103 at the document level (column ``page``).

    Args:
        tokenizer (ModelTokenizer): the tokenizer.
        source (str): Default ``"EleutherAI/wikitext_document_level"``.
        subset (Optional[str]): the dataset configuration (``name`` of ``load_dataset``; None
            for a local copy). Default ``"wikitext-103-v1"``.
        packed (bool): pack documents to ``tokenizer.max_seq_len``. Default False.
        filter_fn (Optional[Callable]): keep only rows for which it returns True. Default None.
        split (str): split to load. Default ``"train"``.
        **load_dataset_kwargs: passed to ``load_dataset``.

    Returns:
        Union[TextCompletionDataset, PackedDataset]: the dataset.
    """
    return text_completion_dataset(
        tokenizer, source=source, column="page", packed=packed,
        filter_fn=filter_fn, split=split, **_with_subset(subset, load_dataset_kwargs),
    )


def cnn_dailymail_articles_dataset(
    tokenizer: ModelTokenizer,
    source: str = "abisee/cnn_dailymail",
    subset: Optional[str] = "3.0.0",
    packed: bool = False,
    filter_fn: Optional[Callable] = None,
    split: str = "train",
    **load_dataset_kwargs: Any,
) -> Union[TextCompletionDataset, PackedDataset]:
    """CNN / DailyMail news articles (column ``article``) as plain text.

    Args:
        tokenizer (ModelTokenizer): the tokenizer.
        source (str): Default ``"abisee/cnn_dailymail"``.
        subset (Optional[str]): the dataset configuration (None for a local copy). Default ``"3.0.0"``.
        packed (bool): pack documents to ``tokenizer.max_seq_len``. Default False.
        filter_fn (Optional[Callable]): keep only rows for which it returns True. Default None.
        split (str): split to load. Default ``"train"``.
        **load_dataset_kwargs: passed to ``load_dataset``.

    Returns:
        Union[TextCompletionDataset, PackedDataset]: the dataset.
    """
    return text_completion_dataset(
        tokenizer, source=source, column="article", packed=packed,
        filter_fn=filter_fn, split=split, **_with_subset(subset, load_dataset_kwargs),
    )


def _with_subset(subset: Optional[str], kwargs: dict) -> dict:
    return {**kwargs, "name": subset} if subset else kwargs
