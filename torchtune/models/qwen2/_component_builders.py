"""Qwen2 (Yang et al., 2024): the shared decoder assembly with Qwen2's quirks.

Qwen2 and Qwen2.5 blocks are Llama's with three differences: biases on the q/k/v projections,
RoPE in the rotate-half layout of their checkpoints (:class:`Qwen2RotaryPositionalEmbeddings`,
so weights load without permuting rows) and, in the small sizes, an output projection tied to
the embedding table.
"""

from typing import List

from torchtune.models.qwen2._positional_embeddings import Qwen2RotaryPositionalEmbeddings
from torchtune.modules import LinearBuilder, TransformerDecoder, build_decoder, dense_linear
from torchtune.modules.peft import LORA_ATTN_MODULES, get_lora_linear_builder


def _qwen2_decoder(linear: LinearBuilder, *, num_heads: int, embed_dim: int, max_seq_len: int,
                   rope_base: float, **dims) -> TransformerDecoder:
    """The Qwen2 decoder with every linear layer made by ``linear`` (plain, LoRA or QLoRA)."""
    if embed_dim % num_heads != 0:
        raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
    rope = Qwen2RotaryPositionalEmbeddings(embed_dim // num_heads, max_seq_len=max_seq_len, base=rope_base)
    return build_decoder(linear, num_heads=num_heads, embed_dim=embed_dim, max_seq_len=max_seq_len,
                         pos_embeddings=rope, qkv_bias=True, **dims)


def qwen2(
    vocab_size: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: int,
    embed_dim: int,
    intermediate_dim: int,
    max_seq_len: int,
    attn_dropout: float = 0.0,
    norm_eps: float = 1e-5,
    rope_base: float = 1_000_000.0,
    tie_word_embeddings: bool = False,
) -> TransformerDecoder:
    """Build a Qwen2 / Qwen2.5 decoder from its dimensions.

    Args:
        vocab_size (int): number of tokens.
        num_layers (int): transformer layers.
        num_heads (int): query heads.
        num_kv_heads (int): key/value heads (``< num_heads`` gives GQA).
        embed_dim (int): model dimension ``d``.
        intermediate_dim (int): MLP width.
        max_seq_len (int): longest sequence (sizes RoPE and the default KV cache).
        attn_dropout (float): attention dropout. Default 0.0.
        norm_eps (float): RMSNorm epsilon (``rms_norm_eps``). Default 1e-5.
        rope_base (float): RoPE base (``rope_theta``). Default 1e6.
        tie_word_embeddings (bool): the output projection is the embedding table (0.5B, 1.5B, 3B).
            Default False.

    Returns:
        TransformerDecoder: the model, randomly initialised; ``forward`` maps ``[b, s]`` token ids to
        ``[b, s, vocab_size]`` logits.

    Raises:
        ValueError: if ``embed_dim`` is not divisible by ``num_heads`` or ``num_heads`` not by
            ``num_kv_heads``.
    """
    return _qwen2_decoder(
        dense_linear, vocab_size=vocab_size, num_layers=num_layers, num_heads=num_heads, num_kv_heads=num_kv_heads,
        embed_dim=embed_dim, intermediate_dim=intermediate_dim, max_seq_len=max_seq_len, attn_dropout=attn_dropout,
        norm_eps=norm_eps, rope_base=rope_base, tie_word_embeddings=tie_word_embeddings,
    )


def lora_qwen2(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    *,
    vocab_size: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: int,
    embed_dim: int,
    intermediate_dim: int,
    max_seq_len: int,
    attn_dropout: float = 0.0,
    norm_eps: float = 1e-5,
    rope_base: float = 1_000_000.0,
    tie_word_embeddings: bool = False,
    lora_rank: int,
    lora_alpha: float,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """Build a Qwen2 decoder with LoRA (or DoRA, QLoRA) adapters on the selected linear layers.

    The state dict is :func:`qwen2`'s plus the adapter tensors, so base checkpoints load with
    ``strict=False``.

    Dimension arguments: as :func:`qwen2`. LoRA arguments: as
    :func:`torchtune.modules.peft.get_lora_linear_builder`.

    Returns:
        TransformerDecoder: the model; adapters start as a no-op (``lora_b`` is zero).

    Raises:
        ValueError: if ``lora_attn_modules`` has an invalid entry, ``apply_lora_to_output`` is set
            with tied embeddings, or the dimensions are inconsistent.
    """
    linear = get_lora_linear_builder(
        lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, lora_rank=lora_rank, lora_alpha=lora_alpha,
        lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )
    return _qwen2_decoder(
        linear, vocab_size=vocab_size, num_layers=num_layers, num_heads=num_heads, num_kv_heads=num_kv_heads,
        embed_dim=embed_dim, intermediate_dim=intermediate_dim, max_seq_len=max_seq_len, attn_dropout=attn_dropout,
        norm_eps=norm_eps, rope_base=rope_base, tie_word_embeddings=tie_word_embeddings,
    )
