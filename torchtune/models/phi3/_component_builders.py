"""Phi-3 (Abdin et al., 2024): the shared decoder assembly with rotate-half RoPE.

Phi-3's blocks are Llama's (RMSNorm, SwiGLU, grouped-query attention, no biases, untied output);
its quirk is that q/k rows stay in the Hugging Face rotate-half layout, so the positional module
is :class:`Phi3RotaryPositionalEmbeddings` instead of the interleaved one. Hugging Face fuses
``qkv_proj`` and ``gate_up_proj``; the checkpointer splits them, so LoRA adapts q, k, v, w1 and w3
separately, exactly as for Llama. Phi-4 is this architecture with other dimensions.
"""

from typing import List

from torchtune.models.phi3._position_embeddings import Phi3RotaryPositionalEmbeddings
from torchtune.modules import LinearBuilder, TransformerDecoder, build_decoder, dense_linear
from torchtune.modules.peft import LORA_ATTN_MODULES, get_lora_linear_builder


def _phi3_decoder(linear: LinearBuilder, *, embed_dim: int, num_heads: int, max_seq_len: int, rope_base: int,
                  **dims) -> TransformerDecoder:
    """The Phi-3 decoder with every linear layer made by ``linear`` (plain, LoRA or QLoRA)."""
    if embed_dim % num_heads != 0:
        raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
    rope = Phi3RotaryPositionalEmbeddings(embed_dim // num_heads, max_seq_len=max_seq_len, base=rope_base)
    return build_decoder(linear, embed_dim=embed_dim, num_heads=num_heads, max_seq_len=max_seq_len,
                         pos_embeddings=rope, **dims)


def phi3(
    vocab_size: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: int,
    embed_dim: int,
    intermediate_dim: int,
    max_seq_len: int,
    attn_dropout: float = 0.0,
    norm_eps: float = 1e-5,
    rope_base: int = 10_000,
) -> TransformerDecoder:
    """Build a Phi-3 decoder (also Phi-4's) from its dimensions.

    Args:
        vocab_size (int): number of tokens.
        num_layers (int): transformer layers.
        num_heads (int): query heads.
        num_kv_heads (int): key/value heads (Phi-3 mini: ``num_heads``; Phi-4: a quarter of them).
        embed_dim (int): model dimension ``d``.
        intermediate_dim (int): MLP width.
        max_seq_len (int): longest sequence (sizes RoPE and the default KV cache).
        attn_dropout (float): attention dropout. Default 0.0.
        norm_eps (float): RMSNorm epsilon. Default 1e-5.
        rope_base (int): RoPE base (``rope_theta``). Default 10000.

    Returns:
        TransformerDecoder: the model, randomly initialised (nn defaults); ``[b, s]`` token ids in,
        ``[b, s, vocab_size]`` logits out.

    Raises:
        ValueError: if ``embed_dim`` is not divisible by ``num_heads``, or ``num_heads`` not by
            ``num_kv_heads``.
    """
    return _phi3_decoder(
        dense_linear, vocab_size=vocab_size, num_layers=num_layers, num_heads=num_heads, num_kv_heads=num_kv_heads,
        embed_dim=embed_dim, intermediate_dim=intermediate_dim, max_seq_len=max_seq_len, attn_dropout=attn_dropout,
        norm_eps=norm_eps, rope_base=rope_base,
    )


def lora_phi3(
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
    rope_base: int = 10_000,
    lora_rank: int,
    lora_alpha: float,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """Build a Phi-3 decoder with LoRA (or DoRA, QLoRA) adapters on the selected linear layers.

    The state dict is :func:`phi3`'s plus the adapter tensors, so base checkpoints load with
    ``strict=False``. With ``quantize_base`` every transformer-layer weight is NF4; the output
    projection stays dense. The adapters sit on the separate q/k/v and w1/w3 projections, which
    Hugging Face fuses: merged weights save as a normal checkpoint, but no PEFT adapter can be
    written (the checkpointer saves ``adapter_model.pt`` only).

    Dimension arguments: as :func:`phi3`. LoRA arguments: as
    :func:`torchtune.modules.peft.get_lora_linear_builder`.

    Returns:
        TransformerDecoder: the model; adapters start as a no-op (``lora_b`` is zero).

    Raises:
        ValueError: if ``lora_attn_modules`` has an invalid entry or nothing is adapted, or the
            dimensions are inconsistent.
    """
    linear = get_lora_linear_builder(
        lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, lora_rank=lora_rank, lora_alpha=lora_alpha,
        lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )
    return _phi3_decoder(
        linear, vocab_size=vocab_size, num_layers=num_layers, num_heads=num_heads, num_kv_heads=num_kv_heads,
        embed_dim=embed_dim, intermediate_dim=intermediate_dim, max_seq_len=max_seq_len, attn_dropout=attn_dropout,
        norm_eps=norm_eps, rope_base=rope_base,
    )
