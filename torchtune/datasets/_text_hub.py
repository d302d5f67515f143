"""Builders for well-known text-completion corpora on the Hugging Face Hub (presets of
:func:`text_completion_dataset`)."""

from typing import Any, Callable, Optional, Union

from torchtune.datasets._builder_utils import maybe_pack
from torchtune.datasets._packed import PackedDataset
from torchtune.datasets._text_completion import TextCompletionDataset
from torchtune.modules.transforms.tokenizers import ModelTokenizer


def _text_corpus(
    tokenizer: ModelTokenizer,
    source: str,
    column: str,
    max_seq_len: Optional[int],
    packed: bool,
    filter_fn: Optional[Callable],
    split: str,
    load_dataset_kwargs: dict,
) -> Union[TextCompletionDataset, PackedDataset]:
    ds = TextCompletionDataset(tokenizer, source=source, column=column, filter_fn=filter_fn, split=split,
                               **load_dataset_kwargs)
    ds._max_seq_len = max_seq_len
    return maybe_pack(ds, tokenizer, packed, split_across_pack=True)


def wikitext_dataset(
    tokenizer: ModelTokenizer,
    source: str = "EleutherAI/wikitext_document_level",
    subset: str = "wikitext-103-v1",
    max_seq_len: Optional[int] = None,
    packed: bool = False,
    filter_fn: Optional[Callable] = None,
    split: str = "train",
    **load_dataset_kwargs: Any,
) -> Union[TextCompletionDataset, PackedDataset]:
    """WikiText-103 at the document level (column ``page``).

    Args:
        tokenizer (ModelTokenizer): the tokenizer.
        source (str): Default ``"EleutherAI/wikitext_document_level"``.
        subset (str): the dataset configuration (``name`` of ``load_dataset``; None or ``""`` for a
            local copy). Default ``"wikitext-103-v1"``.
        max_seq_len (Optional[int]): truncate each document to this many tokens; the tokenizer's
            ``max_seq_len`` if None. Default None.
        packed (bool): pack documents to ``tokenizer.max_seq_len``. Default False.
        filter_fn (Optional[Callable]): keep only rows for which it returns True. Default None.
        split (str): split to load. Default ``"train"``.
        **load_dataset_kwargs: passed to ``load_dataset``.

    Returns:
        Union[TextCompletionDataset, PackedDataset]: the dataset.
    """
    kwargs = {**load_dataset_kwargs, "name": subset} if subset else load_dataset_kwargs
    return _text_corpus(tokenizer, source, "page", max_seq_len, packed, filter_fn, split, kwargs)


def cnn_dailymail_articles_dataset(
    tokenizer: ModelTokenizer,
    source: str = "ccdv/cnn_dailymail",
    max_seq_len: Optional[int] = None,
    filter_fn: Optional[Callable] = None,
    split: str = "train",
    *,
    packed: bool = False,
    **load_dataset_kwargs: Any,
) -> Union[TextCompletionDataset, PackedDataset]:
    """CNN / DailyMail news articles (column ``article``) as plain text.

    The Hub copies have one configuration per version: pass e.g. ``name="3.0.0"`` (forwarded to
    ``load_dataset``), or a parquet mirror such as ``source="abisee/cnn_dailymail"``.

    Args:
        tokenizer (ModelTokenizer): the tokenizer.
        source (str): Default ``"ccdv/cnn_dailymail"``.
        max_seq_len (Optional[int]): truncate each article to this many tokens; the tokenizer's
            ``max_seq_len`` if None. Default None.
        filter_fn (Optional[Callable]): keep only rows for which it returns True. Default None.
        split (str): split to load. Default ``"train"``.
        packed (bool): keyword-only; pack articles to ``tokenizer.max_seq_len``. Default False.
        **load_dataset_kwargs: passed to ``load_dataset``.

    Returns:
        Union[TextCompletionDataset, PackedDataset]: the dataset.
    """
    return _text_corpus(tokenizer, source, "article", max_seq_len, packed, filter_fn, split, load_dataset_kwargs)
