"""Qwen3 (Qwen team, 2025): the shared decoder assembly with Qwen3's quirks.

Qwen3 keeps Qwen2's rotate-half RoPE and key names, and changes three things: no q/k/v biases,
a per-head RMSNorm of queries and keys before RoPE (``q_norm`` / ``k_norm``), and a head size
(128) that is not ``embed_dim // num_heads``. The signature is that of torchtune's main branch,
whose defaults (biases on, norms off) describe Qwen2; the model builders pass Qwen3's values.
"""

from typing import List, Optional

from torchtune.models.qwen2 import Qwen2RotaryPositionalEmbeddings
from torchtune.modules import LinearBuilder, TransformerDecoder, build_decoder, dense_linear
from torchtune.modules.peft import LORA_ATTN_MODULES, get_lora_linear_builder


def _qwen3_decoder(linear: LinearBuilder, *, num_heads: int, embed_dim: int, max_seq_len: int,
                   head_dim: Optional[int], rope_base: float, q_proj_bias: bool, k_proj_bias: bool,
                   v_proj_bias: bool, q_norm: bool, k_norm: bool, **dims) -> TransformerDecoder:
    """The Qwen3 decoder with every linear layer made by ``linear`` (plain, LoRA or QLoRA)."""
    # The shared assembly has one switch for the three biases and one for both norms; the
    # published models never mix them, so a mixed request is refused instead of approximated.
    if not q_proj_bias == k_proj_bias == v_proj_bias:
        raise ValueError(f"q_proj_bias, k_proj_bias and v_proj_bias must be equal, got "
                         f"{q_proj_bias}, {k_proj_bias}, {v_proj_bias}")
    if q_norm != k_norm:
        raise ValueError(f"q_norm and k_norm must be equal, got {q_norm} and {k_norm}")
    if head_dim is None:
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        head_dim = embed_dim // num_heads
    rope = Qwen2RotaryPositionalEmbeddings(head_dim, max_seq_len=max_seq_len, base=rope_base)
    return build_decoder(linear, num_heads=num_heads, embed_dim=embed_dim, max_seq_len=max_seq_len,
                         head_dim=head_dim, pos_embeddings=rope, qkv_bias=q_proj_bias, qk_norm=q_norm, **dims)


def qwen3(
    vocab_size: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: int,
    embed_dim: int,
    intermediate_dim: int,
    max_seq_len: int,
    head_dim: Optional[int] = None,
    attn_dropout: float = 0.0,
    norm_eps: float = 1e-5,
    rope_base: float = 1_000_000.0,
    tie_word_embeddings: bool = False,
    q_proj_bias: bool = True,
    k_proj_bias: bool = True,
    v_proj_bias: bool = True,
    q_norm: bool = False,
    k_norm: bool = False,
) -> TransformerDecoder:
    """Build a Qwen3 decoder from its dimensions.

    Args:
        vocab_size (int): number of tokens.
        num_layers (int): transformer layers.
        num_heads (int): query heads.
        num_kv_heads (int): key/value heads.
        embed_dim (int): model dimension ``d``.
        intermediate_dim (int): MLP width.
        max_seq_len (int): longest sequence (sizes RoPE and the default KV cache).
        head_dim (Optional[int]): per-head size (``head_dim`` in config.json; 128 in every Qwen3);
            ``embed_dim // num_heads`` if None. Default None.
        attn_dropout (float): attention dropout. Default 0.0.
        norm_eps (float): epsilon of every RMSNorm, the q/k norms included. Default 1e-5.
        rope_base (float): RoPE base (``rope_theta``). Default 1e6.
        tie_word_embeddings (bool): the output projection is the embedding table (0.6B-4B).
            Default False.
        q_proj_bias (bool): bias on the query projection (False in Qwen3). Default True.
        k_proj_bias (bool): bias on the key projection; must equal ``q_proj_bias``. Default True.
        v_proj_bias (bool): bias on the value projection; must equal ``q_proj_bias``. Default True.
        q_norm (bool): RMSNorm over each query head before RoPE (True in Qwen3). Default False.
        k_norm (bool): the same for keys; must equal ``q_norm``. Default False.

    Returns:
        TransformerDecoder: the model, randomly initialised; ``[b, s]`` ids to ``[b, s, vocab_size]`` logits.

    Raises:
        ValueError: if the three bias flags or the two norm flags differ, if ``head_dim`` is None
            and ``embed_dim`` is not divisible by ``num_heads``, or ``num_heads`` is not divisible
            by ``num_kv_heads``.
    """
    return _qwen3_decoder(
        dense_linear, vocab_size=vocab_size, num_layers=num_layers, num_heads=num_heads, num_kv_heads=num_kv_heads,
        embed_dim=embed_dim, intermediate_dim=intermediate_dim, max_seq_len=max_seq_len, head_dim=head_dim,
        attn_dropout=attn_dropout, norm_eps=norm_eps, rope_base=rope_base, tie_word_embeddings=tie_word_embeddings,
        q_proj_bias=q_proj_bias, k_proj_bias=k_proj_bias, v_proj_bias=v_proj_bias, q_norm=q_norm, k_norm=k_norm,
    )


def lora_qwen3(
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
    head_dim: Optional[int] = None,
    attn_dropout: float = 0.0,
    norm_eps: float = 1e-5,
    rope_base: float = 1_000_000.0,
    tie_word_embeddings: bool = False,
    q_proj_bias: bool = True,
    k_proj_bias: bool = True,
    v_proj_bias: bool = True,
    q_norm: bool = False,
    k_norm: bool = False,
    lora_rank: int,
    lora_alpha: float,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """Build a Qwen3 decoder with LoRA (or DoRA, QLoRA) adapters on the selected linear layers.

    The state dict is :func:`qwen3`'s plus the adapter tensors, so base checkpoints load with
    ``strict=False``.

    Dimension arguments: as :func:`qwen3`. LoRA arguments: as
    :func:`torchtune.modules.peft.get_lora_linear_builder`.

    Returns:
        TransformerDecoder: the model; adapters start as a no-op (``lora_b`` is zero).

    Raises:
        ValueError: as :func:`qwen3`, or if ``lora_attn_modules`` has an invalid entry or
            ``apply_lora_to_output`` is set with tied embeddings.
    """
    linear = get_lora_linear_builder(
        lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, lora_rank=lora_rank, lora_alpha=lora_alpha,
        lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )
    return _qwen3_decoder(
        linear, vocab_size=vocab_size, num_layers=num_layers, num_heads=num_heads, num_kv_heads=num_kv_heads,
        embed_dim=embed_dim, intermediate_dim=intermediate_dim, max_seq_len=max_seq_len, head_dim=head_dim,
        attn_dropout=attn_dropout, norm_eps=norm_eps, rope_base=rope_base, tie_word_embeddings=tie_word_embeddings,
        q_proj_bias=q_proj_bias, k_proj_bias=k_proj_bias, v_proj_bias=v_proj_bias, q_norm=q_norm, k_norm=k_norm,
    )
