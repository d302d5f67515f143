"""A toy model family written the way docs/model_stack.md says: dimensions plus quirks.

Its quirks: a sliding attention window and tied input/output embeddings (Mistral-style blocks
with Llama 3.2-style tying). ``tests/torchtune/models/test_toy_family.py`` checks that this file
stays within 60 lines and that its logits equal transformers'.
"""

from typing import List

from torchtune.models.convert_weights import hf_to_tune
from torchtune.modules import TransformerDecoder, build_decoder, dense_linear
from torchtune.modules.peft import LORA_ATTN_MODULES, get_lora_linear_builder


def _toy_decoder(linear, *, sliding_window: int, **dims) -> TransformerDecoder:
    return build_decoder(linear, sliding_window=sliding_window, tie_word_embeddings=True, **dims)


def toy(vocab_size: int, num_layers: int, num_heads: int, num_kv_heads: int, embed_dim: int,
        intermediate_dim: int, max_seq_len: int, sliding_window: int, norm_eps: float = 1e-5,
        rope_base: float = 10_000.0) -> TransformerDecoder:
    """The toy decoder: Llama blocks, a sliding window in every layer, tied embeddings."""
    return _toy_decoder(dense_linear, vocab_size=vocab_size, num_layers=num_layers, num_heads=num_heads,
                        num_kv_heads=num_kv_heads, embed_dim=embed_dim, intermediate_dim=intermediate_dim,
                        max_seq_len=max_seq_len, sliding_window=sliding_window, norm_eps=norm_eps,
                        rope_base=rope_base)


def lora_toy(lora_attn_modules: List[LORA_ATTN_MODULES], apply_lora_to_mlp: bool = False, *, lora_rank: int,
             lora_alpha: float, quantize_base: bool = False, **dims) -> TransformerDecoder:
    """The toy decoder with LoRA (QLoRA with ``quantize_base``) on the chosen projections."""
    linear = get_lora_linear_builder(lora_attn_modules, apply_lora_to_mlp, lora_rank=lora_rank,
                                     lora_alpha=lora_alpha, quantize_base=quantize_base)
    return _toy_decoder(linear, **dims)


def toy_hf_to_tune(state_dict, num_heads: int, num_kv_heads: int, embed_dim: int):
    """HF (Mistral-layout) weights -> ours; the tied ``lm_head`` is the embedding and is dropped."""
    state_dict = {k: v for k, v in state_dict.items() if k != "lm_head.weight"}
    return hf_to_tune(state_dict, num_heads=num_heads, num_kv_heads=num_kv_heads, dim=embed_dim)
