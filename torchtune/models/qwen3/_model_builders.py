"""Qwen3 model builders: one plain function per published size and variant, on :func:`qwen3`.

Dimensions are those of the ``config.json`` of each ``Qwen/Qwen3-*`` model (the ``-Base`` and the
post-trained checkpoints share them): vocabulary 151936, head size 128, RMSNorm epsilon 1e-6,
RoPE base 1e6, context 40960, no q/k/v biases, per-head q/k norms. The 0.6B, 1.7B and 4B models
tie the output projection to the embedding table. Qwen3-32B was published without a base model,
hence a single ``qwen3_32b``.
"""

from typing import List

from torchtune.models.qwen3._component_builders import lora_qwen3, qwen3
from torchtune.modules import TransformerDecoder
from torchtune.modules.peft import LORA_ATTN_MODULES

_QWEN3 = dict(vocab_size=151_936, max_seq_len=40_960, head_dim=128, attn_dropout=0.0, norm_eps=1e-6,
              rope_base=1_000_000.0, q_proj_bias=False, k_proj_bias=False, v_proj_bias=False, q_norm=True, k_norm=True)
_0_6B = dict(_QWEN3, num_layers=28, num_heads=16, num_kv_heads=8, embed_dim=1024, intermediate_dim=3072,
             tie_word_embeddings=True)
_1_7B = dict(_QWEN3, num_layers=28, num_heads=16, num_kv_heads=8, embed_dim=2048, intermediate_dim=6144,
             tie_word_embeddings=True)
_4B = dict(_QWEN3, num_layers=36, num_heads=32, num_kv_heads=8, embed_dim=2560, intermediate_dim=9728,
           tie_word_embeddings=True)
_8B = dict(_QWEN3, num_layers=36, num_heads=32, num_kv_heads=8, embed_dim=4096, intermediate_dim=12_288,
           tie_word_embeddings=False)
_14B = dict(_QWEN3, num_layers=40, num_heads=40, num_kv_heads=8, embed_dim=5120, intermediate_dim=17_408,
            tie_word_embeddings=False)
_32B = dict(_QWEN3, num_layers=64, num_heads=64, num_kv_heads=8, embed_dim=5120, intermediate_dim=25_600,
            tie_word_embeddings=False)


def qwen3_0_6b_base() -> TransformerDecoder:
    """Qwen3 0.6B: 28 layers, 16 query / 8 key-value heads of 128, dim 1024, MLP 3072, tied embeddings; the pre-trained ``-Base`` checkpoint."""
    return qwen3(**_0_6B)


def qwen3_0_6b_instruct() -> TransformerDecoder:
    """Qwen3 0.6B: 28 layers, 16 query / 8 key-value heads of 128, dim 1024, MLP 3072, tied embeddings; the post-trained (chat) checkpoint."""
    return qwen3(**_0_6B)


def qwen3_1_7b_base() -> TransformerDecoder:
    """Qwen3 1.7B: 28 layers, 16 query / 8 key-value heads of 128, dim 2048, MLP 6144, tied embeddings; the pre-trained ``-Base`` checkpoint."""
    return qwen3(**_1_7B)


def qwen3_1_7b_instruct() -> TransformerDecoder:
    """Qwen3 1.7B: 28 layers, 16 query / 8 key-value heads of 128, dim 2048, MLP 6144, tied embeddings; the post-trained (chat) checkpoint."""
    return qwen3(**_1_7B)


def qwen3_4b_base() -> TransformerDecoder:
    """Qwen3 4B: 36 layers, 32 query / 8 key-value heads of 128, dim 2560, MLP 9728, tied embeddings; the pre-trained ``-Base`` checkpoint."""
    return qwen3(**_4B)


def qwen3_4b_instruct() -> TransformerDecoder:
    """Qwen3 4B: 36 layers, 32 query / 8 key-value heads of 128, dim 2560, MLP 9728, tied embeddings; the post-trained (chat) checkpoint."""
    return qwen3(**_4B)


def qwen3_8b_base() -> TransformerDecoder:
    """Qwen3 8B: 36 layers, 32 query / 8 key-value heads of 128, dim 4096, MLP 12288; the pre-trained ``-Base`` checkpoint."""
    return qwen3(**_8B)


def qwen3_8b_instruct() -> TransformerDecoder:
    """Qwen3 8B: 36 layers, 32 query / 8 key-value heads of 128, dim 4096, MLP 12288; the post-trained (chat) checkpoint."""
    return qwen3(**_8B)


def qwen3_14b_base() -> TransformerDecoder:
    """Qwen3 14B: 40 layers, 40 query / 8 key-value heads of 128, dim 5120, MLP 17408; the pre-trained ``-Base`` checkpoint."""
    return qwen3(**_14B)


def qwen3_14b_instruct() -> TransformerDecoder:
    """Qwen3 14B: 40 layers, 40 query / 8 key-value heads of 128, dim 5120, MLP 17408; the post-trained (chat) checkpoint."""
    return qwen3(**_14B)


def qwen3_32b() -> TransformerDecoder:
    """Qwen3 32B: 64 layers, 64 query / 8 key-value heads of 128, dim 5120, MLP 25600 (post-trained only)."""
    return qwen3(**_32B)


def lora_qwen3_0_6b_base(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """:func:`qwen3_0_6b_base` with LoRA adapters; arguments as :func:`lora_qwen3`."""
    return lora_qwen3(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_0_6B, lora_rank=lora_rank,
                      lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora,
                      quantize_base=quantize_base)


def lora_qwen3_0_6b_instruct(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """:func:`qwen3_0_6b_instruct` with LoRA adapters; arguments as :func:`lora_qwen3`."""
    return lora_qwen3(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_0_6B, lora_rank=lora_rank,
                      lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora,
                      quantize_base=quantize_base)


def lora_qwen3_1_7b_base(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """:func:`qwen3_1_7b_base` with LoRA adapters; arguments as :func:`lora_qwen3`."""
    return lora_qwen3(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_1_7B, lora_rank=lora_rank,
                      lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora,
                      quantize_base=quantize_base)


def lora_qwen3_1_7b_instruct(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """:func:`qwen3_1_7b_instruct` with LoRA adapters; arguments as :func:`lora_qwen3`."""
    return lora_qwen3(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_1_7B, lora_rank=lora_rank,
                      lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora,
                      quantize_base=quantize_base)


def lora_qwen3_4b_base(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """:func:`qwen3_4b_base` with LoRA adapters; arguments as :func:`lora_qwen3`."""
    return lora_qwen3(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_4B, lora_rank=lora_rank,
                      lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora,
                      quantize_base=quantize_base)


def lora_qwen3_4b_instruct(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """:func:`qwen3_4b_instruct` with LoRA adapters; arguments as :func:`lora_qwen3`."""
    return lora_qwen3(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_4B, lora_rank=lora_rank,
                      lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora,
                      quantize_base=quantize_base)


def lora_qwen3_8b_base(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """:func:`qwen3_8b_base` with LoRA adapters; arguments as :func:`lora_qwen3`."""
    return lora_qwen3(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_8B, lora_rank=lora_rank,
                      lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora,
                      quantize_base=quantize_base)


def lora_qwen3_8b_instruct(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """:func:`qwen3_8b_instruct` with LoRA adapters; arguments as :func:`lora_qwen3`."""
    return lora_qwen3(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_8B, lora_rank=lora_rank,
                      lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora,
                      quantize_base=quantize_base)


def lora_qwen3_14b_base(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """:func:`qwen3_14b_base` with LoRA adapters; arguments as :func:`lora_qwen3`."""
    return lora_qwen3(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_14B, lora_rank=lora_rank,
                      lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora,
                      quantize_base=quantize_base)


def lora_qwen3_14b_instruct(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """:func:`qwen3_14b_instruct` with LoRA adapters; arguments as :func:`lora_qwen3`."""
    return lora_qwen3(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_14B, lora_rank=lora_rank,
                      lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora,
                      quantize_base=quantize_base)


def lora_qwen3_32b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """:func:`qwen3_32b` with LoRA adapters; arguments as :func:`lora_qwen3`."""
    return lora_qwen3(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_32B, lora_rank=lora_rank,
                      lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora,
                      quantize_base=quantize_base)
