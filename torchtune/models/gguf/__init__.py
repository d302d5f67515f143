"""Tokenizers from GGUF files (llama.cpp / Ollama), and GGUF tokenizer metadata from ours.

The weights side (``FullModelGGUFCheckpointer``, ``gguf_model_config``, ``save_gguf``) lives in
``torchtune.training``; see docs/gguf.md.
"""

from torchtune.models.gguf._tokenizer import (
    CHATML_TEMPLATE,
    GGUFChatMLTokenizer,
    gguf_tokenizer,
    gguf_tokenizer_metadata,
    PRE_TOKENIZER_PATTERNS,
)

__all__ = ["CHATML_TEMPLATE", "GGUFChatMLTokenizer", "PRE_TOKENIZER_PATTERNS", "gguf_tokenizer",
           "gguf_tokenizer_metadata"]
