"""The tokenizers' earlier import path; everything lives in :mod:`torchtune.modules.transforms.tokenizers`."""

from torchtune.modules.transforms.tokenizers import (
    BaseTokenizer,
    HuggingFaceBaseTokenizer,
    ModelTokenizer,
    SentencePieceBaseTokenizer,
    TikTokenBaseTokenizer,
    load_tiktoken_bpe_file,
    tokenize_messages_no_special_tokens,
)

__all__ = [
    "BaseTokenizer",
    "ModelTokenizer",
    "SentencePieceBaseTokenizer",
    "TikTokenBaseTokenizer",
    "HuggingFaceBaseTokenizer",
    "load_tiktoken_bpe_file",
    "tokenize_messages_no_special_tokens",
]
