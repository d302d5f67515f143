from typing import List, Optional

from torch import nn

from torchtune.modules import (
    FeedForward,
    RMSNorm,
    RotaryPositionalEmbeddings,
    TransformerDecoder,
    TransformerSelfAttentionLayer,
)
from torchtune.modules.peft import (
    LORA_ATTN_MODULES,
    LinearBuilder,
    build_mlp,
    build_self_attention,
    dense_linear,
    frozen_nf4_linear,
    get_lora_module_names,
    lora_linear_builder,
)


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
    vocab_size: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: int,
    embed_dim: int,
    max_seq_len: int,
    attn_dropout: float,
    intermediate_dim: Optional[int],
    norm_eps: float,
    rope_base: float,
) -> TransformerDecoder:
    """The Llama2 decoder with every linear layer made by ``linear`` (plain, LoRA or QLoRA)."""
    if embed_dim % num_heads != 0:
        raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
    if num_heads % num_kv_heads != 0:
        raise ValueError(f"num_heads ({num_heads}) must be divisible by num_kv_heads ({num_kv_heads})")
    head_dim = embed_dim // num_heads
    hidden_dim = intermediate_dim or scale_hidden_dim_for_mlp(embed_dim)
    rope = RotaryPositionalEmbeddings(dim=head_dim, max_seq_len=max_seq_len, base=rope_base)
    layers = [
        TransformerSelfAttentionLayer(
            attn=build_self_attention(
                linear,
                embed_dim=embed_dim,
                num_heads=num_heads,
                num_kv_heads=num_kv_heads,
                head_dim=head_dim,
                pos_embeddings=rope,
                max_seq_len=max_seq_len,
                attn_dropout=attn_dropout,
            ),
            mlp=build_mlp(linear, dim=embed_dim, hidden_dim=hidden_dim),
            sa_norm=RMSNorm(embed_dim, eps=norm_eps),
            mlp_norm=RMSNorm(embed_dim, eps=norm_eps),
        )
        for _ in range(num_layers)
    ]
    return TransformerDecoder(
        tok_embeddings=nn.Embedding(vocab_size, embed_dim),
        layers=nn.ModuleList(layers),
        max_seq_len=max_seq_len,
        num_heads=num_heads,
        head_dim=head_dim,
        norm=RMSNorm(embed_dim, eps=norm_eps),
        output=linear("output", embed_dim, vocab_size, False),
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
        rope_base (float): RoPE base. Default 10000.0.

    Returns:
        TransformerDecoder: the model, randomly initialised (nn defaults).

    Raises:
        ValueError: if ``embed_dim`` is not divisible by ``num_heads`` or ``num_heads`` not by ``num_kv_heads``.
    """
    return _llama2_decoder(
        dense_linear,
        vocab_size=vocab_size,
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        embed_dim=embed_dim,
        max_seq_len=max_seq_len,
        attn_dropout=attn_dropout,
        intermediate_dim=intermediate_dim,
        norm_eps=norm_eps,
        rope_base=rope_base,
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
    rope_base: float = 10000.0,
    lora_rank: int,
    lora_alpha: float,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """Build a Llama2 decoder with LoRA (or DoRA) adapters on the selected linear layers.

    Its state dict is the base model's plus ``<layer>.lora_a.weight`` / ``<layer>.lora_b.weight``
    (and ``<layer>.magnitude`` with DoRA) for every adapted layer, so base checkpoints load with
    ``load_state_dict(..., strict=False)``. With ``quantize_base`` (QLoRA) every transformer-layer
    weight is stored in NF4 (about a quarter of bf16 memory); the output projection stays dense.
    Build QLoRA models under bf16 as the default dtype. With DoRA, call
    :func:`~torchtune.modules.peft.load_dora_magnitudes` after loading base weights.

    Args:
        lora_attn_modules (List[LORA_ATTN_MODULES]): attention projections to adapt, any of
            ``q_proj``, ``k_proj``, ``v_proj``, ``output_proj``.
        apply_lora_to_mlp (bool): also adapt every MLP's ``w1``, ``w2``, ``w3``. Default False.
        apply_lora_to_output (bool): also adapt the output projection. Default False.
        vocab_size (int): number of tokens.
        num_layers (int): transformer layers.
        num_heads (int): query heads.
        num_kv_heads (int): key/value heads.
        embed_dim (int): model dimension.
        max_seq_len (int): longest sequence.
        intermediate_dim (Optional[int]): MLP width; Llama2's rule from ``embed_dim`` if None.
        attn_dropout (float): attention dropout. Default 0.0.
        norm_eps (float): RMSNorm epsilon. Default 1e-5.
        rope_base (float): RoPE base. Default 10000.0.
        lora_rank (int): adapter rank.
        lora_alpha (float): adapter alpha (updates are scaled by ``alpha / rank``).
        lora_dropout (float): adapter input dropout. Default 0.0.
        use_dora (bool): DoRA instead of LoRA. Default False.
        quantize_base (bool): NF4 base weights (QLoRA). Default False.

    Returns:
        TransformerDecoder: the model; adapters start as a no-op (``lora_b`` is zero).

    Raises:
        ValueError: if ``lora_attn_modules`` has an invalid entry or nothing is adapted, or
            the dimensions are inconsistent.
    """
    lora_modules = get_lora_module_names(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output)
    linear = lora_linear_builder(
        lora_modules,
        lora_rank=lora_rank,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        use_dora=use_dora,
        quantize_base=quantize_base,
    )
    return _llama2_decoder(
        linear,
        vocab_size=vocab_size,
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        embed_dim=embed_dim,
        max_seq_len=max_seq_len,
        attn_dropout=attn_dropout,
        intermediate_dim=intermediate_dim,
        norm_eps=norm_eps,
        rope_base=rope_base,
    )
