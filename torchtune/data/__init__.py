"""Data building blocks: messages, message transforms, prompt templates and collate functions."""

from torchtune.data._collate import (
    left_pad_sequence,
    padded_collate,
    padded_collate_dpo,
    padded_collate_packed,
    padded_collate_sft,
)
from torchtune.data._common import CROSS_ENTROPY_IGNORE_IDX
from torchtune.data._instruct_templates import AlpacaInstructTemplate
from torchtune.data._message_transforms import (
    AlpacaToMessages,
    ChosenRejectedToMessages,
    InputOutputToMessages,
    OpenAIToMessages,
    ShareGPTToMessages,
)
from torchtune.data._messages import Message, Role, validate_messages
from torchtune.data._prompt_templates import (
    ChatMLTemplate,
    GrammarErrorCorrectionTemplate,
    PromptTemplate,
    PromptTemplateInterface,
    QuestionAnswerTemplate,
    SummarizeTemplate,
)
from torchtune.data._utils import truncate

__all__ = [
    "CROSS_ENTROPY_IGNORE_IDX",
    "Message",
    "Role",
    "validate_messages",
    "InputOutputToMessages",
    "AlpacaToMessages",
    "ShareGPTToMessages",
    "OpenAIToMessages",
    "ChosenRejectedToMessages",
    "PromptTemplate",
    "PromptTemplateInterface",
    "ChatMLTemplate",
    "AlpacaInstructTemplate",
    "GrammarErrorCorrectionTemplate",
    "SummarizeTemplate",
    "QuestionAnswerTemplate",
    "padded_collate_sft",
    "padded_collate_packed",
    "padded_collate_dpo",
    "padded_collate",
    "left_pad_sequence",
    "truncate",
]
