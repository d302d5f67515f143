"""Builders for well-known preference datasets on the Hugging Face Hub."""

from typing import Any, Callable, Dict, Mapping, Optional

from torchtune.data._message_transforms import _ToMessages
from torchtune.datasets._preference import PreferenceDataset, preference_dataset
from torchtune.modules.transforms.tokenizers import ModelTokenizer


class StackExchangePairedToMessages(_ToMessages):
    """A prompt column and two answer columns -> ``{"chosen": [...], "rejected": [...]}``.

    Args:
        train_on_input (bool): also train on the prompt. Default False.
        column_map (Optional[Dict[str, str]]): maps ``prompt`` / ``chosen`` / ``rejected`` to your
            column names. Default: the stack-exchange-paired names ``question``, ``response_j``,
            ``response_k``.

    Raises:
        ValueError: if ``column_map`` has other keys.
    """

    _COLUMNS = ["prompt", "chosen", "rejected"]
    _DEFAULT = {"prompt": "question", "chosen": "response_j", "rejected": "response_k"}

    def __init__(self, train_on_input: bool = False, column_map: Optional[Dict[str, str]] = None) -> None:
        super().__init__(train_on_input=train_on_input, column_map={**self._DEFAULT, **(column_map or {})})

    def __call__(self, sample: Mapping[str, Any]) -> Mapping[str, Any]:
        prompt = self._column(sample, "prompt")
        return {key: self._messages([("user", prompt), ("assistant", self._column(sample, key))])
                for key in ("chosen", "rejected")}


def stack_exchange_paired_dataset(
    tokenizer: ModelTokenizer,
    *,
    source: str = "lvwerra/stack-exchange-paired",
    column_map: Optional[Dict[str, str]] = None,
    train_on_input: bool = False,
    filter_fn: Optional[Callable] = None,
    split: str = "train",
    **load_dataset_kwargs: Any,
) -> PreferenceDataset:
    """Stack Exchange questions with a preferred (``response_j``) and a rejected
    (``response_k``) answer.

    Args:
        tokenizer (ModelTokenizer): the model tokenizer.
        source (str): Default ``"lvwerra/stack-exchange-paired"``, read from its ``data/rl`` folder
            (the pairs meant for RL / DPO, as torchtune does) unless ``data_dir`` is given.
        column_map (Optional[Dict[str, str]]): maps ``prompt`` / ``chosen`` / ``rejected``.
        train_on_input (bool): also train on the question. Default False.
        filter_fn (Optional[Callable]): keep only rows for which it returns True. Default None.
        split (str): split to load. Default ``"train"``.
        **load_dataset_kwargs: passed to ``load_dataset``.

    Returns:
        PreferenceDataset: the dataset.
    """
    if source == "lvwerra/stack-exchange-paired":
        # The repository holds four folders of pairs (finetune, reward, rl, evaluation); without a
        # data_dir, load_dataset would concatenate all their "train" files.
        load_dataset_kwargs.setdefault("data_dir", "data/rl")
    return PreferenceDataset(
        source=source,
        message_transform=StackExchangePairedToMessages(train_on_input=train_on_input, column_map=column_map),
        tokenizer=tokenizer,
        filter_fn=filter_fn,
        split=split,
        **load_dataset_kwargs,
    )


def hh_rlhf_helpful_dataset(
    tokenizer: ModelTokenizer,
    *,
    source: str = "RLHFlow/HH-RLHF-Helpful-standard",
    column_map: Optional[Dict[str, str]] = None,
    train_on_input: bool = False,
    new_system_prompt: Optional[str] = None,
    filter_fn: Optional[Callable] = None,
    packed: bool = False,
    split: str = "train",
    **load_dataset_kwargs: Any,
) -> PreferenceDataset:
    """Anthropic's helpful-base preference conversations, in the chosen/rejected OpenAI layout.

    Args: as :func:`preference_dataset`.

    Returns:
        PreferenceDataset: the dataset.
    """
    return preference_dataset(
        tokenizer, source=source, column_map=column_map, train_on_input=train_on_input,
        new_system_prompt=new_system_prompt, filter_fn=filter_fn, packed=packed, split=split,
        **load_dataset_kwargs,
    )
