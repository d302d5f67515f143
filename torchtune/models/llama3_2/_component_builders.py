"""Llama 3.2 text models: Llama 3.1's decoder with RoPE scaling factor 32 and tied embeddings.

The 1B and 3B models reuse the embedding table as the output projection
(:class:`~torchtune.modules.TiedLinear`), so their state dict has no ``output.weight``.
"""

from typing import List, Optional

from torchtune.models.llama3_1._component_builders import _llama3_1_decoder
from torchtune.modules import TransformerDecoder, dense_linear
from torchtune.modules.peft import LORA_ATTN_MODULES, get_lora_linear_builder


def llama3_2(
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
    scale_factor: int = 32,
    tie_word_embeddings: bool = True,
    *,
    low_freq_factor: int = 1,
    high_freq_factor: int = 4,
    old_context_len: int = 8192,
) -> TransformerDecoder:
    """Build a Llama 3.2 (text) decoder from its dimensions.

    Args:
        vocab_size (int): number of tokens.
        num_layers (int): transformer layers.
        num_heads (int): query heads.
        num_kv_heads (int): key/value heads (``< num_heads`` gives GQA).
        embed_dim (int): model dimension.
        max_seq_len (int): longest sequence (sizes RoPE and the default KV cache).
        attn_dropout (float): attention dropout. Default 0.0.
        rope_base (int): RoPE base. Default 500000.
        intermediate_dim (Optional[int]): MLP width; Llama 2's rule from ``embed_dim`` if None.
        norm_eps (float): RMSNorm epsilon. Default 1e-5.
        scale_factor (int): RoPE low-frequency scaling (1: none). Default 32.
        tie_word_embeddings (bool): the output projection is the embedding table. Default True.
        low_freq_factor (int): RoPE scaling band, see
            :class:`~torchtune.models.llama3_1.Llama3ScaledRoPE` (an addition to torchtune's
            signature, as are the next two). Default 1.
        high_freq_factor (int): RoPE scaling band. Default 4.
        old_context_len (int): pre-training context of the RoPE scaling. Default 8192.

    Returns:
        TransformerDecoder: the model, randomly initialised (nn defaults); input tokens
        ``[b, s]``, logits ``[b, s, vocab_size]``.

    Raises:
        ValueError: if ``embed_dim`` is not divisible by ``num_heads`` or ``num_heads`` not by
            ``num_kv_heads``, or ``high_freq_factor <= low_freq_factor``.
    """
    return _llama3_1_decoder(
        dense_linear, vocab_size=vocab_size, num_layers=num_layers, num_heads=num_heads, num_kv_heads=num_kv_heads,
        embed_dim=embed_dim, max_seq_len=max_seq_len, attn_dropout=attn_dropout, rope_base=rope_base,
        intermediate_dim=intermediate_dim, norm_eps=norm_eps, scale_factor=scale_factor,
        low_freq_factor=low_freq_factor, high_freq_factor=high_freq_factor, old_context_len=old_context_len,
        tie_word_embeddings=tie_word_embeddings,
    )


def lora_llama3_2(
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
    scale_factor: int = 32,
    lora_rank: int,
    lora_alpha: float,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
    tie_word_embeddings: bool = True,
    low_freq_factor: int = 1,
    high_freq_factor: int = 4,
    old_context_len: int = 8192,
) -> TransformerDecoder:
    """Build a Llama 3.2 (text) decoder with LoRA (or DoRA, or QLoRA) adapters.

    The state dict is :func:`llama3_2`'s plus the adapter tensors (see
    :func:`~torchtune.models.llama3.lora_llama3`). A tied output projection is the embedding
    table and cannot carry an adapter.

    Dimension arguments: as :func:`llama3_2`. LoRA arguments: as
    :func:`torchtune.modules.peft.get_lora_linear_builder`.

    Returns:
        TransformerDecoder: the model; adapters start as a no-op (``lora_b`` is zero).

    Raises:
        ValueError: if ``lora_attn_modules`` has an invalid entry or nothing is adapted, if
            ``apply_lora_to_output`` is asked for with tied embeddings, or the dimensions are
            inconsistent.
    """
    linear = get_lora_linear_builder(
        lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, lora_rank=lora_rank, lora_alpha=lora_alpha,
        lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )
    return _llama3_1_decoder(
        linear, vocab_size=vocab_size, num_layers=num_layers, num_heads=num_heads, num_kv_heads=num_kv_heads,
        embed_dim=embed_dim, max_seq_len=max_seq_len, attn_dropout=attn_dropout, rope_base=rope_base,
        intermediate_dim=intermediate_dim, norm_eps=norm_eps, scale_factor=scale_factor,
        low_freq_factor=low_freq_factor, high_freq_factor=high_freq_factor, old_context_len=old_context_len,
        tie_word_embeddings=tie_word_embeddings,
    )
