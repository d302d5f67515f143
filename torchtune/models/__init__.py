"""Model families. Each ``models/<family>/`` exposes component builders, model builders and tokenizers.

``hf_decoder`` / ``lora_hf_decoder`` / ``qlora_hf_decoder`` build a decoder from a Hugging Face
checkpoint's config.json (docs/hf_models.md).
"""

from torchtune.models._hf_decoder import hf_decoder, lora_hf_decoder, qlora_hf_decoder

__all__ = ["hf_decoder", "lora_hf_decoder", "qlora_hf_decoder"]
