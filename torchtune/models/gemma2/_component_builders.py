"""Gemma 2 (Google DeepMind, 2024): Gemma's blocks plus four quirks, all :func:`build_decoder` arguments.

- a second pair of norms, after attention and after the MLP, before each residual add
  (``post_norms``; the layer's ``sa_scale`` and ``mlp_scale``);
- attention scores multiplied by ``query_pre_attn_scalar ** -0.5`` instead of ``head_dim ** -0.5``,
  then soft-capped at ``hidden_capping_value * tanh(s / hidden_capping_value)``;
- logits soft-capped the same way at ``final_capping_value``;
- layers alternating between a local sliding window (even layers: 0, 2, ...) and global attention
  (odd layers), as config.json's ``layer_types`` has them.
"""

from typing import List, Optional

from torchtune.models.gemma._component_builders import gemma_quirks
from torchtune.modules import LinearBuilder, TransformerDecoder, build_decoder, dense_linear
from torchtune.modules.peft import LORA_ATTN_MODULES, get_lora_linear_builder


def alternating_windows(num_layers: int, window: int, every: int) -> List[Optional[int]]:
    """Per-layer attention windows: every ``every``-th layer global (None), the others ``window``.

    Hugging Face's Gemma configs name layer ``i`` ``"full_attention"`` when ``(i + 1) % every == 0``
    (Gemma 2: ``every=2``, layers 1, 3, ...; Gemma 3: ``every=6``, layers 5, 11, ...).

    Args:
        num_layers (int): number of layers.
        window (int): the sliding window of the local layers.
        every (int): period of the global layers.

    Returns:
        List[Optional[int]]: one entry per layer.
    """
    return [None if (i + 1) % every == 0 else window for i in range(num_layers)]


def _gemma2_decoder(linear: LinearBuilder, *, num_layers: int, embed_dim: int, head_dim: int,
                    hidden_capping_value: Optional[float], final_capping_value: Optional[float],
                    sliding_window_size: int, query_pre_attn_scalar: Optional[int], **dims) -> TransformerDecoder:
    """The Gemma 2 decoder with every linear layer made by ``linear`` (plain, LoRA or QLoRA)."""
    scalar = head_dim if query_pre_attn_scalar is None else query_pre_attn_scalar
    return build_decoder(
        linear, num_layers=num_layers, embed_dim=embed_dim, head_dim=head_dim, **gemma_quirks(embed_dim),
        post_norms=True, attn_scale=scalar**-0.5, attn_softcapping=hidden_capping_value,
        output_softcapping=final_capping_value,
        sliding_window=alternating_windows(num_layers, sliding_window_size, every=2), **dims,
    )


def gemma2(
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
    hidden_capping_value: float = 50.0,
    final_capping_value: float = 30.0,
    sliding_window_size: int = 4096,
    query_pre_attn_scalar: Optional[int] = None,
) -> TransformerDecoder:
    """Build a Gemma 2 decoder from its dimensions.

    Args:
        vocab_size (int): number of tokens.
        num_layers (int): transformer layers (even ones local, odd ones global).
        num_heads (int): query heads.
        head_dim (int): per-head size.
        num_kv_heads (int): key/value heads.
        embed_dim (int): model dimension ``d``.
        intermediate_dim (int): MLP width.
        max_seq_len (int): longest sequence (sizes RoPE and the default KV cache).
        attn_dropout (float): attention dropout. Default 0.0.
        norm_eps (float): epsilon of every norm. Default 1e-6.
        rope_base (int): RoPE base (``rope_theta``). Default 10000.
        hidden_capping_value (float): cap of the attention scores (``attn_logit_softcapping``);
            None for none. Default 50.0.
        final_capping_value (float): cap of the logits (``final_logit_softcapping``); None for
            none. Default 30.0.
        sliding_window_size (int): window of the local layers (``sliding_window``). Default 4096.
        query_pre_attn_scalar (Optional[int]): scores are scaled by its inverse square root;
            ``head_dim`` if None. Default None.

    Returns:
        TransformerDecoder: the model, randomly initialised; ``[b, s]`` ids to ``[b, s, vocab_size]``
        logits. Its output projection is the embedding table.

    Raises:
        ValueError: if ``num_heads`` is not divisible by ``num_kv_heads``, or a cap or the window
            is not positive.
    """
    return _gemma2_decoder(
        dense_linear, vocab_size=vocab_size, num_layers=num_layers, num_heads=num_heads, head_dim=head_dim,
        num_kv_heads=num_kv_heads, embed_dim=embed_dim, intermediate_dim=intermediate_dim, max_seq_len=max_seq_len,
        attn_dropout=attn_dropout, norm_eps=norm_eps, rope_base=rope_base,
        hidden_capping_value=hidden_capping_value, final_capping_value=final_capping_value,
        sliding_window_size=sliding_window_size, query_pre_attn_scalar=query_pre_attn_scalar,
    )


def lora_gemma2(
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
    hidden_capping_value: float = 50.0,
    final_capping_value: float = 30.0,
    sliding_window_size: int = 4096,
    query_pre_attn_scalar: Optional[int] = None,
    lora_rank: int,
    lora_alpha: float,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """Build a Gemma 2 decoder with LoRA (or DoRA, QLoRA) adapters on the selected linear layers.

    The output projection is the embedding table, so it takes no adapter. The state dict is
    :func:`gemma2`'s plus the adapter tensors.

    Dimension arguments: as :func:`gemma2`. LoRA arguments: as
    :func:`torchtune.modules.peft.get_lora_linear_builder`.

    Returns:
        TransformerDecoder: the model; adapters start as a no-op (``lora_b`` is zero).

    Raises:
        ValueError: as :func:`gemma2`, or if ``lora_attn_modules`` has an invalid entry.
    """
    linear = get_lora_linear_builder(
        lora_attn_modules, apply_lora_to_mlp, False, lora_rank=lora_rank, lora_alpha=lora_alpha,
        lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )
    return _gemma2_decoder(
        linear, vocab_size=vocab_size, num_layers=num_layers, num_heads=num_heads, head_dim=head_dim,
        num_kv_heads=num_kv_heads, embed_dim=embed_dim, intermediate_dim=intermediate_dim, max_seq_len=max_seq_len,
        attn_dropout=attn_dropout, norm_eps=norm_eps, rope_base=rope_base,
        hidden_capping_value=hidden_capping_value, final_capping_value=final_capping_value,
        sliding_window_size=sliding_window_size, query_pre_attn_scalar=query_pre_attn_scalar,
    )
