"""Llama2 (Touvron et al., 2023): the shared decoder assembly with Llama2's dimensions.

Llama2's only quirk is its MLP width rule; everything else is :func:`~torchtune.modules.build_decoder`'s
default (RMSNorm, SwiGLU, RoPE, no biases, untied output).
"""

from typing import List, Optional

from torchtune.modules import (
    FeedForward,
    LinearBuilder,
    TransformerDecoder,
    build_decoder,
    build_mlp,
    dense_linear,
    frozen_nf4_linear,
)
from torchtune.modules.peft import LORA_ATTN_MODULES, get_lora_linear_builder


def scale_hidden_dim_for_mlp(dim: int, multiple_of: int = 256) -> int:
    """Llama2's MLP width: two thirds of ``4 * dim``, rounded up to a multiple of ``multiple_of``."""
    hidden_dim = int(2 * (4 * dim) / 3)
    return multiple_of * ((hidden_dim + multiple_of - 1) // multiple_of)


def llama2_mlp(dim: int, hidden_dim: int, quantize_base: bool = False) -> FeedForward:
    """SwiGLU feed-forward of Llama2: ``w2(silu(w1 x) * w3 x)`` without biases.

    Args:
        dim (int): model dimension.
        hidden_dim (int): MLP width.
        quantize_base (bool): store the (frozen) weights in NF4. Default False.

    Returns:
        FeedForward: the MLP.
    """
    linear = frozen_nf4_linear if quantize_base else dense_linear
    return build_mlp(linear, dim=dim, hidden_dim=hidden_dim)


def _llama2_decoder(
    linear: LinearBuilder,
    *,
    embed_dim: int,
    intermediate_dim: Optional[int],
    **dims,
) -> TransformerDecoder:
    """The Llama2 decoder with every linear layer made by ``linear`` (plain, LoRA or QLoRA)."""
    return build_decoder(
        linear,
        embed_dim=embed_dim,
        intermediate_dim=intermediate_dim or scale_hidden_dim_for_mlp(embed_dim),
        **dims,
    )


def llama2(
    vocab_size: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: int,
    embed_dim: int,
    max_seq_len: int,
    attn_dropout: float = 0.0,
    intermediate_dim: Optional[int] = None,
    norm_eps: float = 1e-5,
    rope_base: float = 10000.0,
) -> TransformerDecoder:
    """Build a Llama2 decoder (Touvron et al., 2023) from its dimensions.

    Args:
        vocab_size (int): number of tokens.
        num_layers (int): transformer layers.
        num_heads (int): query heads.
        num_kv_heads (int): key/value heads (``< num_heads`` gives GQA).
        embed_dim (int): model dimension.
        max_seq_len (int): longest sequence (sizes RoPE and the default KV cache).
        attn_dropout (float): attention dropout. Default 0.0.
        intermediate_dim (Optional[int]): MLP width; Llama2's rule from ``embed_dim`` if None.
        norm_eps (float): RMSNorm epsilon. Default 1e-5.
        rope_base (float): RoPE base; in the LoRA and classifier builders an addition to
            torchtune's signature. Default 10000.0.

    Returns:
        TransformerDecoder: the model, randomly initialised (nn defaults).

    Raises:
        ValueError: if ``embed_dim`` is not divisible by ``num_heads`` or ``num_heads`` not by ``num_kv_heads``.
    """
    return _llama2_decoder(
        dense_linear, vocab_size=vocab_size, num_layers=num_layers, num_heads=num_heads, num_kv_heads=num_kv_heads,
        embed_dim=embed_dim, max_seq_len=max_seq_len, attn_dropout=attn_dropout, intermediate_dim=intermediate_dim,
        norm_eps=norm_eps, rope_base=rope_base,
    )


def lora_llama2(
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
    lora_rank: int,
    lora_alpha: float,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
    rope_base: float = 10000.0,
) -> TransformerDecoder:
    """Build a Llama2 decoder with LoRA (or DoRA) adapters on the selected linear layers.

    Its state dict is the base model's plus ``<layer>.lora_a.weight`` / ``<layer>.lora_b.weight``
    (and ``<layer>.magnitude`` with DoRA) for every adapted layer, so base checkpoints load with
    ``load_state_dict(..., strict=False)``. With ``quantize_base`` (QLoRA) every transformer-layer
    weight is stored in NF4 (about a quarter of bf16 memory); the output projection stays dense.
    Build QLoRA models under bf16 as the default dtype. With DoRA, call
    :func:`~torchtune.modules.peft.load_dora_magnitudes` after loading base weights.

    Dimension arguments: as :func:`llama2`. LoRA arguments: as
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
    return _llama2_decoder(
        linear, vocab_size=vocab_size, num_layers=num_layers, num_heads=num_heads, num_kv_heads=num_kv_heads,
        embed_dim=embed_dim, max_seq_len=max_seq_len, attn_dropout=attn_dropout, intermediate_dim=intermediate_dim,
        norm_eps=norm_eps, rope_base=rope_base,
    )


def llama2_classifier(
    num_classes: int,
    *,
    vocab_size: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: int,
    embed_dim: int,
    max_seq_len: int,
    attn_dropout: float = 0.0,
    intermediate_dim: Optional[int] = None,
    norm_eps: float = 1e-5,
    rope_base: float = 10000.0,
) -> TransformerDecoder:
    """Build a Llama2 decoder whose output projection is a ``[d] -> [num_classes]`` head.

    The head scores every position, ``[b, s, d] -> [b, s, num_classes]``; a sequence's score is read at
    its last non-padding token (as ``transformers``' ``LlamaForSequenceClassification`` pools). With
    ``num_classes=1`` this is a reward model. The head is called ``output`` (Hugging Face: ``score``);
    to start from a language model's checkpoint, drop its ``output.weight`` first with
    :func:`~torchtune.training.update_state_dict_for_classifier`.

    Dimension arguments: as :func:`llama2`.

    Args:
        num_classes (int): width of the head (1 for a reward model).

    Returns:
        TransformerDecoder: the model, randomly initialised; ``forward`` returns ``[b, s, num_classes]``.

    Raises:
        ValueError: if the dimensions are inconsistent.
    """
    return _llama2_decoder(
        dense_linear, vocab_size=vocab_size, num_layers=num_layers, num_heads=num_heads, num_kv_heads=num_kv_heads,
        embed_dim=embed_dim, max_seq_len=max_seq_len, attn_dropout=attn_dropout, intermediate_dim=intermediate_dim,
        norm_eps=norm_eps, rope_base=rope_base, output_dim=num_classes,
    )


def lora_llama2_classifier(
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
    intermediate_dim: Optional[int] = None,
    attn_dropout: float = 0.0,
    norm_eps: float = 1e-5,
    lora_rank: int,
    lora_alpha: float,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
    rope_base: float = 10000.0,
) -> TransformerDecoder:
    """:func:`llama2_classifier` with LoRA (DoRA, QLoRA) adapters.

    ``apply_lora_to_output`` adapts the ``[d] -> [num_classes]`` head. The head is never quantized.

    Dimension arguments: as :func:`llama2`. LoRA arguments: as
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
    return _llama2_decoder(
        linear, vocab_size=vocab_size, num_layers=num_layers, num_heads=num_heads, num_kv_heads=num_kv_heads,
        embed_dim=embed_dim, max_seq_len=max_seq_len, attn_dropout=attn_dropout, intermediate_dim=intermediate_dim,
        norm_eps=norm_eps, rope_base=rope_base, output_dim=num_classes,
    )
