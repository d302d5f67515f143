from typing import Any, Callable, Dict, Optional, Union

from torchtune.data._message_transforms import InputOutputToMessages
from torchtune.datasets._builder_utils import maybe_pack
from torchtune.datasets._packed import PackedDataset
from torchtune.datasets._sft import SFTDataset
from torchtune.modules.transforms.tokenizers import ModelTokenizer


def instruct_dataset(
    tokenizer: ModelTokenizer,
    *,
    source: str,
    column_map: Optional[Dict[str, str]] = None,
    train_on_input: bool = False,
    new_system_prompt: Optional[str] = None,
    packed: bool = False,
    filter_fn: Optional[Callable] = None,
    split: str = "train",
    **load_dataset_kwargs: Any,
) -> Union[SFTDataset, PackedDataset]:
    """Single-turn instruction data: an ``input`` column (the prompt) and an ``output`` column
    (the reply).

    Example config (a local JSON file)::

        dataset:
          _component_: torchtune.datasets.instruct_dataset
          source: json
          data_files: data/my_data.json
          column_map: {input: question, output: answer}

    Args:
        tokenizer (ModelTokenizer): the model tokenizer (also applies its prompt template).
        source (str): ``datasets.load_dataset`` source.
        column_map (Optional[Dict[str, str]]): maps ``input`` / ``output`` to your column names.
        train_on_input (bool): also train on the prompt. Default False.
        new_system_prompt (Optional[str]): prepend a system message with this text. Default None.
        packed (bool): pack samples to ``tokenizer.max_seq_len``. Default False.
        filter_fn (Optional[Callable]): keep only rows for which it returns True. Default None.
        split (str): split to load. Default ``"train"``.
        **load_dataset_kwargs: passed to ``load_dataset`` (``data_files``, ``name``, ...).

    Returns:
        Union[SFTDataset, PackedDataset]: the dataset.
    """
    ds = SFTDataset(
        source=source,
        message_transform=InputOutputToMessages(
            train_on_input=train_on_input, column_map=column_map, new_system_prompt=new_system_prompt
        ),
        model_transform=tokenizer,
        filter_fn=filter_fn,
        split=split,
        **load_dataset_kwargs,
    )
    return maybe_pack(ds, tokenizer, packed)
