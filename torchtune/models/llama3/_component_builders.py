"""Llama 3 (Grattafiori et al., 2024): the shared decoder assembly with Llama 3's dimensions.

Next to Llama 2, Llama 3 changes only data: a 128K vocabulary, grouped-query attention in every
size and RoPE base 500000. Its MLP width rule, when no width is given, is Llama 2's. The later
releases (3.1, 3.2, 3.3) reuse :func:`_llama3_decoder` with their own positional embedding
(Llama 3.1's scaled RoPE) and, for 3.2, tied embeddings.
"""

from typing import List, Optional

from torch import nn

from torchtune.models.llama2._component_builders import scale_hidden_dim_for_mlp
from torchtune.modules import LinearBuilder, TransformerDecoder, build_decoder, dense_linear
from torchtune.modules.peft import LORA_ATTN_MODULES, get_lora_linear_builder


def _llama3_decoder(
    linear: LinearBuilder,
    *,
    embed_dim: int,
    intermediate_dim: Optional[int],
    pos_embeddings: Optional[nn.Module] = None,
    tie_word_embeddings: bool = False,
    **dims,
) -> TransformerDecoder:
    """The Llama 3.x decoder with every linear layer made by ``linear`` (plain, LoRA or QLoRA).

    ``pos_embeddings`` None means plain RoPE with ``rope_base`` (Llama 3); Llama 3.1 and later
    pass their :class:`~torchtune.models.llama3_1.Llama3ScaledRoPE`.
    """
    return build_decoder(
        linear,
        embed_dim=embed_dim,
        intermediate_dim=intermediate_dim or scale_hidden_dim_for_mlp(embed_dim),
        pos_embeddings=pos_embeddings,
        tie_word_embeddings=tie_word_embeddings,
        **dims,
    )


def llama3(
    vocab_size: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: int,
    embed_dim: int,
    max_seq_len: int,
    attn_dropout: float = 0.0,
    rope_base: int = 500000,
    intermediate_dim: Optional[int] = None,
    norm_eps: float = 1e-5,
) -> TransformerDecoder:
    """Build a Llama 3 decoder from its dimensions.

    Args:
        vocab_size (int): number of tokens.
        num_layers (int): transformer layers.
        num_heads (int): query heads.
        num_kv_heads (int): key/value heads (``< num_heads`` gives GQA).
        embed_dim (int): model dimension.
        max_seq_len (int): longest sequence (sizes RoPE and the default KV cache).
        attn_dropout (float): attention dropout. Default 0.0.
        rope_base (int): RoPE base. Default 500000.
        intermediate_dim (Optional[int]): MLP width; if None, two thirds of ``4 * embed_dim``
            rounded up to a multiple of 256 (the published sizes all give it explicitly).
        norm_eps (float): RMSNorm epsilon. Default 1e-5.

    Returns:
        TransformerDecoder: the model, randomly initialised (nn defaults); input tokens
        ``[b, s]``, logits ``[b, s, vocab_size]``.

    Raises:
        ValueError: if ``embed_dim`` is not divisible by ``num_heads`` or ``num_heads`` not by ``num_kv_heads``.
    """
    return _llama3_decoder(
        dense_linear, vocab_size=vocab_size, num_layers=num_layers, num_heads=num_heads, num_kv_heads=num_kv_heads,
        embed_dim=embed_dim, max_seq_len=max_seq_len, attn_dropout=attn_dropout, rope_base=rope_base,
        intermediate_dim=intermediate_dim, norm_eps=norm_eps,
    )


def lora_llama3(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    *,
    vocab_size: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: int,
    embed_dim: int,
    max_seq_len: int,
    intermediate_dim: Optional[int] = None,
    attn_dropout: float = 0.0,
    norm_eps: float = 1e-5,
    rope_base: int = 500000,
    lora_rank: int,
    lora_alpha: float,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """Build a Llama 3 decoder with LoRA (or DoRA, or QLoRA) adapters on the selected linear layers.

    The state dict is :func:`llama3`'s plus ``<layer>.lora_a.weight`` / ``<layer>.lora_b.weight``
    (and ``<layer>.magnitude`` with DoRA) for every adapted layer, so a base checkpoint loads with
    ``strict=False``. With ``quantize_base`` every transformer-layer weight is stored in NF4.

    Dimension arguments: as :func:`llama3`. LoRA arguments: as
    :func:`torchtune.modules.peft.get_lora_linear_builder`.

    Returns:
        TransformerDecoder: the model; adapters start as a no-op (``lora_b`` is zero).

    Raises:
        ValueError: if ``lora_attn_modules`` has an invalid entry or nothing is adapted, or
            the dimensions are inconsistent.
    """
    linear = get_lora_linear_builder(
        lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, lora_rank=lora_rank, lora_alpha=lora_alpha,
        lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )
    return _llama3_decoder(
        linear, vocab_size=vocab_size, num_layers=num_layers, num_heads=num_heads, num_kv_heads=num_kv_heads,
        embed_dim=embed_dim, max_seq_len=max_seq_len, attn_dropout=attn_dropout, rope_base=rope_base,
        intermediate_dim=intermediate_dim, norm_eps=norm_eps,
    )
