"""Gemma 3 text decoder (Google DeepMind, 2025): Gemma 2's blocks with Gemma 3's attention pattern.

Against Gemma 2 it changes four things, all :func:`build_decoder` arguments:

- five local (sliding-window) layers for every global one: layer ``i`` is global when
  ``(i + 1) % sliding_window_pattern == 0`` (config.json ``layer_types``);
- two RoPE bases: ``local_rope_base`` (10000) in the local layers, ``rope_base`` (1e6) in the
  global ones, whose positions the larger models also scale linearly (``rope_scale_factor``, 8);
- a per-head ``(1 + w)`` RMSNorm of queries and keys before RoPE (QK-norm);
- no soft-capping of attention scores or logits.

Gemma 3 checkpoints keep Hugging Face's rotate-half q/k rows (see
:class:`Gemma3RotaryPositionalEmbeddings`), so their weights are only renamed on load.
"""

from typing import List, Optional

from torchtune.models.gemma._component_builders import gemma_quirks
from torchtune.models.gemma2._component_builders import alternating_windows
from torchtune.models.gemma3._positional_embeddings import Gemma3RotaryPositionalEmbeddings
from torchtune.modules import LinearBuilder, TransformerDecoder, build_decoder, dense_linear
from torchtune.modules.peft import LORA_ATTN_MODULES, get_lora_linear_builder


def _gemma3_decoder(linear: LinearBuilder, *, num_layers: int, embed_dim: int, head_dim: int, max_seq_len: int,
                    rope_base: float, local_rope_base: float, rope_scale_factor: float, sliding_window_size: int,
                    sliding_window_pattern: int, query_pre_attn_scalar: Optional[int], **dims) -> TransformerDecoder:
    """The Gemma 3 decoder with every linear layer made by ``linear`` (plain, LoRA or QLoRA)."""
    if sliding_window_pattern < 1:
        raise ValueError(f"sliding_window_pattern must be >= 1, got {sliding_window_pattern}")
    windows = alternating_windows(num_layers, sliding_window_size, every=sliding_window_pattern)
    # One module per kind, shared by its layers: the cos/sin cache is the large part.
    local_rope = Gemma3RotaryPositionalEmbeddings(head_dim, max_seq_len=max_seq_len, base=local_rope_base)
    global_rope = Gemma3RotaryPositionalEmbeddings(head_dim, max_seq_len=max_seq_len, base=rope_base,
                                                   scale_factor=rope_scale_factor)
    scalar = head_dim if query_pre_attn_scalar is None else query_pre_attn_scalar
    return build_decoder(
        linear, num_layers=num_layers, embed_dim=embed_dim, head_dim=head_dim, max_seq_len=max_seq_len,
        **gemma_quirks(embed_dim), post_norms=True, qk_norm=True, attn_scale=scalar**-0.5, sliding_window=windows,
        pos_embeddings=[global_rope if w is None else local_rope for w in windows], **dims,
    )


def gemma3(
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
    rope_base: float = 1_000_000.0,
    local_rope_base: float = 10_000.0,
    rope_scale_factor: float = 1.0,
    sliding_window_size: int = 512,
    sliding_window_pattern: int = 6,
    query_pre_attn_scalar: Optional[int] = None,
) -> TransformerDecoder:
    """Build a Gemma 3 text decoder from its dimensions.

    Args:
        vocab_size (int): number of tokens.
        num_layers (int): transformer layers.
        num_heads (int): query heads.
        head_dim (int): per-head size.
        num_kv_heads (int): key/value heads.
        embed_dim (int): model dimension ``d``.
        intermediate_dim (int): MLP width.
        max_seq_len (int): longest sequence (sizes RoPE and the default KV cache).
        attn_dropout (float): attention dropout. Default 0.0.
        norm_eps (float): epsilon of every norm, the q/k norms included. Default 1e-6.
        rope_base (float): RoPE base of the global layers (``rope_theta``). Default 1e6.
        local_rope_base (float): RoPE base of the local layers (``rope_local_base_freq``). Default 10000.
        rope_scale_factor (float): linear RoPE scaling of the global layers (``rope_scaling.factor``;
            8 in 4B, 12B and 27B). Default 1.0.
        sliding_window_size (int): window of the local layers (``sliding_window``). Default 512.
        sliding_window_pattern (int): every this many layers, one is global. Default 6.
        query_pre_attn_scalar (Optional[int]): scores are scaled by its inverse square root;
            ``head_dim`` if None. Default None.

    Returns:
        TransformerDecoder: the model, randomly initialised; ``[b, s]`` ids to ``[b, s, vocab_size]``
        logits. Its output projection is the embedding table.

    Raises:
        ValueError: if ``num_heads`` is not divisible by ``num_kv_heads``, the window,
            ``sliding_window_pattern`` or ``rope_scale_factor`` is not positive.
    """
    return _gemma3_decoder(
        dense_linear, vocab_size=vocab_size, num_layers=num_layers, num_heads=num_heads, head_dim=head_dim,
        num_kv_heads=num_kv_heads, embed_dim=embed_dim, intermediate_dim=intermediate_dim, max_seq_len=max_seq_len,
        attn_dropout=attn_dropout, norm_eps=norm_eps, rope_base=rope_base, local_rope_base=local_rope_base,
        rope_scale_factor=rope_scale_factor, sliding_window_size=sliding_window_size,
        sliding_window_pattern=sliding_window_pattern, query_pre_attn_scalar=query_pre_attn_scalar,
    )


def lora_gemma3(
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
    rope_base: float = 1_000_000.0,
    local_rope_base: float = 10_000.0,
    rope_scale_factor: float = 1.0,
    sliding_window_size: int = 512,
    sliding_window_pattern: int = 6,
    query_pre_attn_scalar: Optional[int] = None,
    lora_rank: int,
    lora_alpha: float,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """Build a Gemma 3 text decoder with LoRA (or DoRA, QLoRA) adapters on the selected linear layers.

    The output projection is the embedding table, so it takes no adapter. The state dict is
    :func:`gemma3`'s plus the adapter tensors.

    Dimension arguments: as :func:`gemma3`. LoRA arguments: as
    :func:`torchtune.modules.peft.get_lora_linear_builder`.

    Returns:
        TransformerDecoder: the model; adapters start as a no-op (``lora_b`` is zero).

    Raises:
        ValueError: as :func:`gemma3`, or if ``lora_attn_modules`` has an invalid entry.
    """
    linear = get_lora_linear_builder(
        lora_attn_modules, apply_lora_to_mlp, False, lora_rank=lora_rank, lora_alpha=lora_alpha,
        lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )
    return _gemma3_decoder(
        linear, vocab_size=vocab_size, num_layers=num_layers, num_heads=num_heads, head_dim=head_dim,
        num_kv_heads=num_kv_heads, embed_dim=embed_dim, intermediate_dim=intermediate_dim, max_seq_len=max_seq_len,
        attn_dropout=attn_dropout, norm_eps=norm_eps, rope_base=rope_base, local_rope_base=local_rope_base,
        rope_scale_factor=rope_scale_factor, sliding_window_size=sliding_window_size,
        sliding_window_pattern=sliding_window_pattern, query_pre_attn_scalar=query_pre_attn_scalar,
    )
