"""Dataset classes and builders on Hugging Face ``datasets.load_dataset``.

Every builder takes the model tokenizer first and ``load_dataset`` arguments as keywords, so
Hub names, local folders and ``json`` / ``csv`` / ``parquet`` / ``text`` files with
``data_files`` all work.
"""

from torchtune.datasets._alpaca import alpaca_cleaned_dataset, alpaca_dataset
from torchtune.datasets._chat import chat_dataset
from torchtune.datasets._concat import ConcatDataset
from torchtune.datasets._instruct import instruct_dataset
from torchtune.datasets._packed import PackedDataset
from torchtune.datasets._preference import PreferenceDataset, preference_dataset
from torchtune.datasets._prompt import gsm8k_prompt_dataset, prompt_dataset, PromptDataset
from torchtune.datasets._preference_hub import (
    StackExchangePairedToMessages,
    hh_rlhf_helpful_dataset,
    stack_exchange_paired_dataset,
)
from torchtune.datasets._sft import SFTDataset
from torchtune.datasets._sft_hub import grammar_dataset, samsum_dataset, slimorca_dataset
from torchtune.datasets._text_completion import TextCompletionDataset, text_completion_dataset
from torchtune.datasets._text_hub import cnn_dailymail_articles_dataset, wikitext_dataset

__all__ = [
    "SFTDataset",
    "PackedDataset",
    "ConcatDataset",
    "PreferenceDataset",
    "TextCompletionDataset",
    "StackExchangePairedToMessages",
    "instruct_dataset",
    "chat_dataset",
    "text_completion_dataset",
    "preference_dataset",
    "alpaca_dataset",
    "alpaca_cleaned_dataset",
    "slimorca_dataset",
    "samsum_dataset",
    "grammar_dataset",
    "wikitext_dataset",
    "cnn_dailymail_articles_dataset",
    "stack_exchange_paired_dataset",
    "hh_rlhf_helpful_dataset",
    "PromptDataset",
    "prompt_dataset",
    "gsm8k_prompt_dataset",
]
