from typing import Any, Callable, Dict, Mapping, Optional

from torchtune.data._messages import validate_messages
from torchtune.datasets._builder_utils import labels_from_mask
from torchtune.datasets._load import HFRowDataset
from torchtune.modules.transforms import Transform


class SFTDataset(HFRowDataset):
    """Supervised fine-tuning data: rows -> messages -> tokens and labels.

    Each item is produced on access: ``message_transform`` turns the row into
    ``{"messages": [...]}``, ``model_transform`` (the model tokenizer) turns that into
    ``tokens`` and ``mask``, and the labels are the tokens with masked positions set to
    ``CROSS_ENTROPY_IGNORE_IDX`` (-100). Labels are not shifted; the recipe shifts them.

    Args:
        source (str): ``datasets.load_dataset`` source (Hub name, ``json``, ``csv``, ...).
        message_transform (Transform): row -> ``{"messages": List[Message]}``.
        model_transform (Transform): ``{"messages": ...}`` -> ``{"tokens", "mask", ...}``.
        filter_fn (Optional[Callable]): keep only rows for which it returns True. Default None.
        **load_dataset_kwargs: passed to ``load_dataset`` (``split``, ``data_files``, ...).
    """

    def __init__(
        self,
        *,
        source: str,
        message_transform: Transform,
        model_transform: Transform,
        filter_fn: Optional[Callable] = None,
        **load_dataset_kwargs: Any,
    ) -> None:
        self._message_transform = message_transform
        self._model_transform = model_transform
        super().__init__(source, filter_fn=filter_fn, **load_dataset_kwargs)

    def _prepare_sample(self, sample: Mapping[str, Any]) -> Dict[str, Any]:
        transformed = self._message_transform(sample)
        if "messages" in transformed:
            validate_messages(transformed["messages"])
        out = dict(self._model_transform(transformed))
        return tokens_and_labels(out)


def tokens_and_labels(tokenized: Dict[str, Any]) -> Dict[str, Any]:
    """Replace ``mask`` by ``labels`` (tokens, with masked positions ignored by the loss).

    Raises:
        ValueError: if ``tokens`` or ``mask`` is missing or their lengths differ.
    """
    if "tokens" not in tokenized or "mask" not in tokenized:
        raise ValueError(f"The model transform must return 'tokens' and 'mask', got keys {sorted(tokenized)}")
    tokens, mask = tokenized["tokens"], tokenized.pop("mask")
    if len(tokens) != len(mask):
        raise ValueError(f"tokens ({len(tokens)}) and mask ({len(mask)}) differ in length")
    tokenized["labels"] = labels_from_mask(tokens, mask)
    return tokenized
