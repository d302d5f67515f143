"""Text tokenizers: base tokenizers (text <-> ids) and helpers for model tokenizers (messages -> ids)."""

from torchtune.modules.transforms.tokenizers._gpt2 import GPT2BaseTokenizer
from torchtune.modules.transforms.tokenizers._hf_tokenizer import HuggingFaceBaseTokenizer
from torchtune.modules.transforms.tokenizers._sentencepiece import SentencePieceBaseTokenizer
from torchtune.modules.transforms.tokenizers._tiktoken import TikTokenBaseTokenizer, load_tiktoken_bpe_file
from torchtune.modules.transforms.tokenizers._utils import (
    BaseTokenizer,
    ModelTokenizer,
    parse_hf_tokenizer_json,
    tokenize_messages_no_special_tokens,
)

__all__ = [
    "BaseTokenizer",
    "ModelTokenizer",
    "SentencePieceBaseTokenizer",
    "TikTokenBaseTokenizer",
    "GPT2BaseTokenizer",
    "HuggingFaceBaseTokenizer",
    "load_tiktoken_bpe_file",
    "tokenize_messages_no_special_tokens",
    "parse_hf_tokenizer_json",
]
