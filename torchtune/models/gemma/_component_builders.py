"""Gemma (Google DeepMind, 2024): the shared decoder assembly with Gemma's quirks.

Gemma is a Llama-style decoder with four differences, all of them :func:`build_decoder`
arguments: a ``(1 + w)`` RMSNorm (:class:`GemmaRMSNorm`), token embeddings multiplied by
``sqrt(embed_dim)``, a GeGLU MLP with the tanh approximation of GELU, and an output projection
tied to the embedding table. Its head size (256) is not ``embed_dim // num_heads`` in the 7B model.
"""

import math
from typing import List

from torch import nn

from torchtune.models.gemma.rms_norm import GemmaRMSNorm
from torchtune.modules import LinearBuilder, TransformerDecoder, build_decoder, dense_linear
from torchtune.modules.peft import LORA_ATTN_MODULES, get_lora_linear_builder


def gelu_tanh() -> nn.Module:
    """GELU with the tanh approximation, the activation of every Gemma MLP (``gelu_pytorch_tanh``)."""
    return nn.GELU(approximate="tanh")


def gemma_quirks(embed_dim: int) -> dict:
    """The :func:`build_decoder` arguments every Gemma generation shares.

    Args:
        embed_dim (int): model dimension ``d`` (the embeddings are scaled by ``sqrt(d)``).

    Returns:
        dict: ``norm``, ``mlp_activation``, ``embed_scale`` and ``tie_word_embeddings``.
    """
    return dict(norm=GemmaRMSNorm, mlp_activation=gelu_tanh, embed_scale=math.sqrt(embed_dim),
                tie_word_embeddings=True)


def _gemma_decoder(linear: LinearBuilder, *, embed_dim: int, **dims) -> TransformerDecoder:
    """The Gemma decoder with every linear layer made by ``linear`` (plain, LoRA or QLoRA)."""
    return build_decoder(linear, embed_dim=embed_dim, **gemma_quirks(embed_dim), **dims)


def gemma(
    vocab_size: int,
    num_layers: int,
    num_heads: int,
    head_dim: int,
    num_kv_heads: int,
    embed_dim: int,
    intermediate_dim: int,
    max_seq_len: int,
    attn_dropout: float = 0.0,
    norm_eps: float = 1e-6,
    rope_base: int = 10_000,
) -> TransformerDecoder:
    """Build a Gemma decoder from its dimensions.

    Args:
        vocab_size (int): number of tokens.
        num_layers (int): transformer layers.
        num_heads (int): query heads.
        head_dim (int): per-head size (``head_dim`` in config.json; 256 in Gemma 2B and 7B).
        num_kv_heads (int): key/value heads (1 in Gemma 2B: multi-query attention).
        embed_dim (int): model dimension ``d``.
        intermediate_dim (int): MLP width.
        max_seq_len (int): longest sequence (sizes RoPE and the default KV cache).
        attn_dropout (float): attention dropout. Default 0.0.
        norm_eps (float): epsilon of every norm. Default 1e-6.
        rope_base (int): RoPE base (``rope_theta``). Default 10000.

    Returns:
        TransformerDecoder: the model, randomly initialised; ``[b, s]`` ids to ``[b, s, vocab_size]``
        logits. Its output projection is the embedding table.

    Raises:
        ValueError: if ``num_heads`` is not divisible by ``num_kv_heads``.
    """
    return _gemma_decoder(
        dense_linear, vocab_size=vocab_size, num_layers=num_layers, num_heads=num_heads, head_dim=head_dim,
        num_kv_heads=num_kv_heads, embed_dim=embed_dim, intermediate_dim=intermediate_dim, max_seq_len=max_seq_len,
        attn_dropout=attn_dropout, norm_eps=norm_eps, rope_base=rope_base,
    )


def lora_gemma(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    *,
    vocab_size: int,
    num_layers: int,
    num_heads: int,
    head_dim: int,
    num_kv_heads: int,
    embed_dim: int,
    intermediate_dim: int,
    max_seq_len: int,
    attn_dropout: float = 0.0,
    norm_eps: float = 1e-6,
    rope_base: int = 10_000,
    lora_rank: int,
    lora_alpha: float,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """Build a Gemma decoder with LoRA (or DoRA, QLoRA) adapters on the selected linear layers.

    There is no ``apply_lora_to_output``: the output projection is the (frozen) embedding table.
    The state dict is :func:`gemma`'s plus the adapter tensors.

    Dimension arguments: as :func:`gemma`. LoRA arguments: as
    :func:`torchtune.modules.peft.get_lora_linear_builder`.

    Returns:
        TransformerDecoder: the model; adapters start as a no-op (``lora_b`` is zero).

    Raises:
        ValueError: as :func:`gemma`, or if ``lora_attn_modules`` has an invalid entry.
    """
    linear = get_lora_linear_builder(
        lora_attn_modules, apply_lora_to_mlp, False, lora_rank=lora_rank, lora_alpha=lora_alpha,
        lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )
    return _gemma_decoder(
        linear, vocab_size=vocab_size, num_layers=num_layers, num_heads=num_heads, head_dim=head_dim,
        num_kv_heads=num_kv_heads, embed_dim=embed_dim, intermediate_dim=intermediate_dim, max_seq_len=max_seq_len,
        attn_dropout=attn_dropout, norm_eps=norm_eps, rope_base=rope_base,
    )
