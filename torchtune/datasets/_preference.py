from typing import Any, Callable, Dict, List, Mapping, Optional

from torchtune.data._message_transforms import ChosenRejectedToMessages
from torchtune.data._messages import validate_messages
from torchtune.datasets._builder_utils import labels_from_mask
from torchtune.datasets._load import HFRowDataset
from torchtune.modules.transforms import Transform
from torchtune.modules.transforms.tokenizers import ModelTokenizer


class PreferenceDataset(HFRowDataset):
    """Preference pairs (a chosen and a rejected conversation) for DPO-style training.

    Args:
        source (str): ``datasets.load_dataset`` source.
        message_transform (Transform): row -> ``{"chosen": [...], "rejected": [...]}`` messages.
        tokenizer (ModelTokenizer): tokenizes each conversation.
        filter_fn (Optional[Callable]): keep only rows for which it returns True. Default None.
        packed (bool): must be False; packing preference pairs is not supported.
        **load_dataset_kwargs: passed to ``load_dataset`` (``split``, ``data_files``, ...).

    Raises:
        ValueError: if ``packed`` is True.
    """

    def __init__(
        self,
        *,
        source: str,
        message_transform: Transform,
        tokenizer: ModelTokenizer,
        filter_fn: Optional[Callable] = None,
        packed: bool = False,
        **load_dataset_kwargs: Any,
    ) -> None:
        if packed:
            raise ValueError("Packing is not supported for preference datasets; set packed=False")
        self._message_transform = message_transform
        self._tokenizer = tokenizer
        super().__init__(source, filter_fn=filter_fn, **load_dataset_kwargs)

    def _prepare_sample(self, sample: Mapping[str, Any]) -> Dict[str, List[int]]:
        transformed = self._message_transform(sample)
        out = {}
        for key in ("chosen", "rejected"):
            validate_messages(transformed[key])
            tokens, mask = self._tokenizer.tokenize_messages(transformed[key])
            out[f"{key}_input_ids"] = tokens
            out[f"{key}_labels"] = labels_from_mask(tokens, mask)
        return out


def preference_dataset(
    tokenizer: ModelTokenizer,
    *,
    source: str,
    column_map: Optional[Dict[str, str]] = None,
    train_on_input: bool = False,
    new_system_prompt: Optional[str] = None,
    filter_fn: Optional[Callable] = None,
    packed: bool = False,
    split: str = "train",
    **load_dataset_kwargs: Any,
) -> PreferenceDataset:
    """Preference data with ``chosen`` and ``rejected`` columns, each a whole conversation in the
    OpenAI format (``[{"role": "user", ...}, {"role": "assistant", ...}]``).

    Items have ``chosen_input_ids``, ``chosen_labels``, ``rejected_input_ids`` and
    ``rejected_labels``; batch them with :func:`~torchtune.data.padded_collate_dpo`.

    Args:
        tokenizer (ModelTokenizer): the model tokenizer.
        source (str): ``datasets.load_dataset`` source.
        column_map (Optional[Dict[str, str]]): maps ``chosen`` / ``rejected`` to your column names.
        train_on_input (bool): also train on the prompt. Default False.
        new_system_prompt (Optional[str]): replace the system message. Default None.
        filter_fn (Optional[Callable]): keep only rows for which it returns True. Default None.
        packed (bool): must be False. Default False.
        split (str): split to load. Default ``"train"``.
        **load_dataset_kwargs: passed to ``load_dataset``.

    Returns:
        PreferenceDataset: the dataset.
    """
    return PreferenceDataset(
        source=source,
        message_transform=ChosenRejectedToMessages(
            train_on_input=train_on_input, column_map=column_map, new_system_prompt=new_system_prompt
        ),
        tokenizer=tokenizer,
        filter_fn=filter_fn,
        packed=packed,
        split=split,
        **load_dataset_kwargs,
    )
