"""Instruction prompt formats that build one user prompt from several dataset columns."""

from typing import Any, Dict, Mapping, Optional

from torchtune.data._prompt_templates import PromptTemplate
from torchtune.data._utils import get_column, resolve_column_map

_NO_INPUT_PREFIX = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n"
)
_RESPONSE_CUE = "\n\n### Response:\n"


class AlpacaInstructTemplate(PromptTemplate):
    """The prompt of the Stanford Alpaca dataset (Taori et al., 2023).

    With a non-empty ``input``::

        Below is an instruction that describes a task, paired with an input that provides further
        context. Write a response that appropriately completes the request.

        ### Instruction:
        {instruction}

        ### Input:
        {input}

        ### Response:

    and without the input paragraph otherwise.

    Also usable as a prompt template (``tokenizer.prompt_template``): calling it wraps each user
    message as an instruction with no input.
    """

    _WITH_INPUT = (
        "Below is an instruction that describes a task, paired with an input that provides further "
        "context. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Input:\n{input}" + _RESPONSE_CUE
    )

    def __init__(self) -> None:
        super().__init__({"user": (_NO_INPUT_PREFIX, _RESPONSE_CUE), "assistant": ("", "")})

    @classmethod
    def format(cls, sample: Mapping[str, Any], column_map: Optional[Dict[str, str]] = None) -> str:
        """Build the prompt from a sample's ``instruction`` and ``input`` columns.

        Args:
            sample (Mapping[str, Any]): a dataset row.
            column_map (Optional[Dict[str, str]]): maps ``instruction`` / ``input`` to the
                dataset's column names. A missing ``input`` column counts as empty.

        Returns:
            str: the prompt, ending with ``"### Response:\\n"``.

        Raises:
            KeyError: if the instruction column is missing.
        """
        columns = resolve_column_map(
            {k: v for k, v in (column_map or {}).items() if k in ("instruction", "input")},
            ["instruction", "input"],
            "AlpacaInstructTemplate",
        )
        instruction = get_column(sample, columns["instruction"], "instruction")
        text_input = sample.get(columns["input"]) or ""
        if text_input:
            return cls._WITH_INPUT.format(instruction=instruction, input=text_input)
        return _NO_INPUT_PREFIX + instruction + _RESPONSE_CUE
