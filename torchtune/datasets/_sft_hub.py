"""Builders for well-known supervised fine-tuning datasets on the Hugging Face Hub.

Each is a preset of :func:`instruct_dataset` or :func:`chat_dataset`; every argument can be
overridden, e.g. ``source: json`` with ``data_files`` for a local copy in the same layout.
"""

from typing import Any, Callable, Dict, Optional, Union

from torchtune.datasets._chat import chat_dataset
from torchtune.datasets._instruct import instruct_dataset
from torchtune.datasets._packed import PackedDataset
from torchtune.datasets._sft import SFTDataset
from torchtune.modules.transforms.tokenizers import ModelTokenizer


def slimorca_dataset(
    tokenizer: ModelTokenizer,
    *,
    source: str = "Open-Orca/SlimOrca-Dedup",
    column_map: Optional[Dict[str, str]] = None,
    train_on_input: bool = False,
    new_system_prompt: Optional[str] = None,
    packed: bool = False,
    filter_fn: Optional[Callable] = None,
    split: str = "train",
    **load_dataset_kwargs: Any,
) -> Union[SFTDataset, PackedDataset]:
    """SlimOrca-Dedup: GPT-4-completed conversations in the ShareGPT layout.

    Args: as :func:`chat_dataset` (``conversation_style`` is ``"sharegpt"``), except
    ``column_map``: ``{"conversations": <column>}`` names the conversation column of another
    layout. Default None (``"conversations"``).

    Returns:
        Union[SFTDataset, PackedDataset]: the dataset.

    Raises:
        ValueError: if ``column_map`` has keys other than ``"conversations"``.
    """
    column_map = dict(column_map or {})
    unknown = sorted(set(column_map) - {"conversations"})
    if unknown:
        raise ValueError(f"slimorca_dataset column_map only maps 'conversations', got {unknown}")
    return chat_dataset(
        tokenizer, source=source, conversation_column=column_map.get("conversations", "conversations"),
        conversation_style="sharegpt", train_on_input=train_on_input, new_system_prompt=new_system_prompt,
        packed=packed, filter_fn=filter_fn, split=split, **load_dataset_kwargs,
    )


def samsum_dataset(
    tokenizer: ModelTokenizer,
    *,
    source: str = "Samsung/samsum",
    column_map: Optional[Dict[str, str]] = None,
    train_on_input: bool = False,
    new_system_prompt: Optional[str] = None,
    packed: bool = False,
    filter_fn: Optional[Callable] = None,
    split: str = "train",
    **load_dataset_kwargs: Any,
) -> Union[SFTDataset, PackedDataset]:
    """SAMSum dialogue summarization; pair it with
    ``prompt_template: torchtune.data.SummarizeTemplate`` on the tokenizer.

    Args: as :func:`instruct_dataset`; ``column_map`` defaults to
    ``{"input": "dialogue", "output": "summary"}``.

    Returns:
        Union[SFTDataset, PackedDataset]: the dataset.
    """
    return instruct_dataset(
        tokenizer, source=source, column_map=column_map or {"input": "dialogue", "output": "summary"},
        train_on_input=train_on_input, new_system_prompt=new_system_prompt, packed=packed,
        filter_fn=filter_fn, split=split, **load_dataset_kwargs,
    )


def grammar_dataset(
    tokenizer: ModelTokenizer,
    *,
    source: str = "liweili/c4_200m",
    column_map: Optional[Dict[str, str]] = None,
    train_on_input: bool = False,
    new_system_prompt: Optional[str] = None,
    packed: bool = False,
    filter_fn: Optional[Callable] = None,
    split: str = "train",
    **load_dataset_kwargs: Any,
) -> Union[SFTDataset, PackedDataset]:
    """C4-200M grammar error correction pairs (``input`` -> ``output``); pair it with
    ``prompt_template: torchtune.data.GrammarErrorCorrectionTemplate`` on the tokenizer.

    Args: as :func:`instruct_dataset`.

    Returns:
        Union[SFTDataset, PackedDataset]: the dataset.
    """
    return instruct_dataset(
        tokenizer, source=source, column_map=column_map, train_on_input=train_on_input,
        new_system_prompt=new_system_prompt, packed=packed, filter_fn=filter_fn, split=split,
        **load_dataset_kwargs,
    )
