from typing import Any, Callable, Optional, Union

from torchtune.data._message_transforms import OpenAIToMessages, ShareGPTToMessages
from torchtune.datasets._builder_utils import maybe_pack
from torchtune.datasets._packed import PackedDataset
from torchtune.datasets._sft import SFTDataset
from torchtune.modules.transforms.tokenizers import ModelTokenizer


def chat_dataset(
    tokenizer: ModelTokenizer,
    *,
    source: str,
    conversation_column: str,
    conversation_style: str,
    train_on_input: bool = False,
    new_system_prompt: Optional[str] = None,
    packed: bool = False,
    filter_fn: Optional[Callable] = None,
    split: str = "train",
    **load_dataset_kwargs: Any,
) -> Union[SFTDataset, PackedDataset]:
    """Multi-turn conversations stored in one column.

    Args:
        tokenizer (ModelTokenizer): the model tokenizer.
        source (str): ``datasets.load_dataset`` source.
        conversation_column (str): the column holding each conversation.
        conversation_style (str): ``"sharegpt"`` (``[{"from": "human" | "gpt" | "system",
            "value": ...}]``) or ``"openai"`` (``[{"role": ..., "content": ...}]``).
        train_on_input (bool): also train on user messages. Default False.
        new_system_prompt (Optional[str]): replace the system message. Default None.
        packed (bool): pack samples to ``tokenizer.max_seq_len``. Default False.
        filter_fn (Optional[Callable]): keep only rows for which it returns True. Default None.
        split (str): split to load. Default ``"train"``.
        **load_dataset_kwargs: passed to ``load_dataset``.

    Returns:
        Union[SFTDataset, PackedDataset]: the dataset.

    Raises:
        ValueError: on an unknown ``conversation_style``.
    """
    if conversation_style == "sharegpt":
        message_transform = ShareGPTToMessages(
            train_on_input=train_on_input,
            column_map={"conversations": conversation_column},
            new_system_prompt=new_system_prompt,
        )
    elif conversation_style == "openai":
        message_transform = OpenAIToMessages(
            train_on_input=train_on_input,
            column_map={"messages": conversation_column},
            new_system_prompt=new_system_prompt,
        )
    else:
        raise ValueError(f"conversation_style must be 'sharegpt' or 'openai', got {conversation_style!r}")
    ds = SFTDataset(
        source=source,
        message_transform=message_transform,
        model_transform=tokenizer,
        filter_fn=filter_fn,
        split=split,
        **load_dataset_kwargs,
    )
    return maybe_pack(ds, tokenizer, packed)
