"""Model families. Each ``models/<family>/`` exposes component builders, model builders and tokenizers.

``decoder`` / ``lora_decoder`` build a decoder from named block choices (docs/blocks.md);
``hf_decoder`` / ``lora_hf_decoder`` / ``qlora_hf_decoder`` build one from a Hugging Face
checkpoint's config.json, and ``hf_tokenizer`` its tokenizer with the chat template
(docs/hf_models.md).
"""

from torchtune.models._decoder import decoder, lora_decoder
from torchtune.models._hf_decoder import hf_decoder, hf_tokenizer, lora_hf_decoder, qlora_hf_decoder

__all__ = ["decoder", "lora_decoder", "hf_decoder", "hf_tokenizer", "lora_hf_decoder", "qlora_hf_decoder"]
