"""Mistral (Jiang et al., 2023): the shared decoder assembly with Mistral's dimensions and window.

Mistral's blocks are Llama's (RMSNorm, SwiGLU, RoPE, grouped-query attention, no biases, untied
output); its one quirk is the sliding attention window of Mistral 7B v0.1 (``sliding_window: 4096``
in its ``config.json``; v0.2 and later have ``null``, global attention). torchtune's signatures have
no window argument; ``sliding_window`` is our trailing addition, and None keeps torchtune's model.
"""

from typing import List, Optional

from torchtune.modules import LinearBuilder, TransformerDecoder, build_decoder, dense_linear
from torchtune.modules.peft import LORA_ATTN_MODULES, get_lora_linear_builder


def _mistral_decoder(linear: LinearBuilder, *, sliding_window: Optional[int], **dims) -> TransformerDecoder:
    """The Mistral decoder with every linear layer made by ``linear`` (plain, LoRA or QLoRA)."""
    return build_decoder(linear, sliding_window=sliding_window, **dims)


def mistral(
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
    *,
    sliding_window: Optional[int] = None,
) -> TransformerDecoder:
    """Build a Mistral decoder from its dimensions.

    Args:
        vocab_size (int): number of tokens.
        num_layers (int): transformer layers.
        num_heads (int): query heads.
        num_kv_heads (int): key/value heads (``< num_heads`` gives GQA).
        embed_dim (int): model dimension.
        intermediate_dim (int): MLP width.
        max_seq_len (int): longest sequence (sizes RoPE and the default KV cache).
        attn_dropout (float): attention dropout. Default 0.0.
        norm_eps (float): RMSNorm epsilon. Default 1e-5.
        rope_base (int): RoPE base (``rope_theta``). Default 10000.
        sliding_window (Optional[int]): every query attends to at most this many most recent
            positions, itself included, also while decoding with a KV cache; None for global
            attention. Match the checkpoint's ``config.json`` ``sliding_window`` (an addition to
            torchtune's signature). Default None.

    Returns:
        TransformerDecoder: the model, randomly initialised (nn defaults).

    Raises:
        ValueError: if ``embed_dim`` is not divisible by ``num_heads``, ``num_heads`` not by
            ``num_kv_heads``, or ``sliding_window`` is not positive.
    """
    return _mistral_decoder(
        dense_linear, vocab_size=vocab_size, num_layers=num_layers, num_heads=num_heads, num_kv_heads=num_kv_heads,
        embed_dim=embed_dim, intermediate_dim=intermediate_dim, max_seq_len=max_seq_len, attn_dropout=attn_dropout,
        norm_eps=norm_eps, rope_base=rope_base, sliding_window=sliding_window,
    )


def lora_mistral(
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
    intermediate_dim: int,
    attn_dropout: float = 0.0,
    norm_eps: float = 1e-5,
    rope_base: int = 10_000,
    lora_rank: int,
    lora_alpha: float,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
    sliding_window: Optional[int] = None,
) -> TransformerDecoder:
    """Build a Mistral decoder with LoRA (or DoRA, QLoRA) adapters on the selected linear layers.

    The state dict is :func:`mistral`'s plus the adapter tensors, so base checkpoints load with
    ``strict=False``. With ``quantize_base`` every transformer-layer weight is NF4; the output
    projection stays dense.

    Dimension arguments: as :func:`mistral`. LoRA arguments: as
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
    return _mistral_decoder(
        linear, vocab_size=vocab_size, num_layers=num_layers, num_heads=num_heads, num_kv_heads=num_kv_heads,
        embed_dim=embed_dim, intermediate_dim=intermediate_dim, max_seq_len=max_seq_len, attn_dropout=attn_dropout,
        norm_eps=norm_eps, rope_base=rope_base, sliding_window=sliding_window,
    )


def mistral_classifier(
    num_classes: int,
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
    sliding_window: Optional[int] = None,
) -> TransformerDecoder:
    """Build a Mistral decoder whose output projection is a ``[d] -> [num_classes]`` head.

    Every position is scored, ``[b, s, d] -> [b, s, num_classes]``; read a sequence's score at its
    last non-padding token (as ``MistralForSequenceClassification`` pools). ``num_classes=1`` is a
    reward model. The head is ``output`` here and ``score`` in Hugging Face checkpoints
    (``model_type: REWARD``).

    Dimension arguments: as :func:`mistral`.

    Args:
        num_classes (int): width of the head (1 for a reward model).

    Returns:
        TransformerDecoder: the model; ``forward`` returns ``[b, s, num_classes]``.

    Raises:
        ValueError: if the dimensions are inconsistent.
    """
    return _mistral_decoder(
        dense_linear, vocab_size=vocab_size, num_layers=num_layers, num_heads=num_heads, num_kv_heads=num_kv_heads,
        embed_dim=embed_dim, intermediate_dim=intermediate_dim, max_seq_len=max_seq_len, attn_dropout=attn_dropout,
        norm_eps=norm_eps, rope_base=rope_base, sliding_window=sliding_window, output_dim=num_classes,
    )


def lora_mistral_classifier(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    *,
    num_classes: int,
    vocab_size: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: int,
    embed_dim: int,
    max_seq_len: int,
    intermediate_dim: int,
    attn_dropout: float = 0.0,
    norm_eps: float = 1e-5,
    rope_base: int = 10_000,
    lora_rank: int,
    lora_alpha: float,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
    sliding_window: Optional[int] = None,
) -> TransformerDecoder:
    """:func:`mistral_classifier` with LoRA (DoRA, QLoRA) adapters.

    ``apply_lora_to_output`` adapts the ``[d] -> [num_classes]`` head, which is never quantized.

    Dimension arguments: as :func:`mistral`. LoRA arguments: as
    :func:`torchtune.modules.peft.get_lora_linear_builder`.

    Args:
        num_classes (int): width of the head (1 for a reward model).

    Returns:
        TransformerDecoder: the model; ``forward`` returns ``[b, s, num_classes]``.

    Raises:
        ValueError: if ``lora_attn_modules`` has an invalid entry or nothing is adapted, or the
            dimensions are inconsistent.
    """
    linear = get_lora_linear_builder(
        lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, lora_rank=lora_rank, lora_alpha=lora_alpha,
        lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )
    return _mistral_decoder(
        linear, vocab_size=vocab_size, num_layers=num_layers, num_heads=num_heads, num_kv_heads=num_kv_heads,
        embed_dim=embed_dim, intermediate_dim=intermediate_dim, max_seq_len=max_seq_len, attn_dropout=attn_dropout,
        norm_eps=norm_eps, rope_base=rope_base, sliding_window=sliding_window, output_dim=num_classes,
    )
