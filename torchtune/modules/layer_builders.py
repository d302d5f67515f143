"""Model-family-independent builders of attention and MLP blocks from a *linear builder*.

A linear builder is a function ``(name, in_dim, out_dim, bias) -> nn.Module`` that decides, per
layer name (``q_proj``, ``w1``, ``output``, ...), which kind of linear layer to build. The plain
model uses :func:`dense_linear`; a LoRA, DoRA or QLoRA model passes the builder made by
:func:`torchtune.modules.peft.lora_linear_builder`. Every other line of a model is shared.
"""

from typing import Callable, Optional

from torch import nn

from torchtune.modules.attention import MultiHeadAttention
from torchtune.modules.feed_forward import FeedForward
from torchtune.modules.kv_cache import KVCache
from torchtune.modules.low_precision.nf4_linear import FrozenNF4Linear

# (name, in_dim, out_dim, bias) -> module mapping [..., in_dim] to [..., out_dim]
LinearBuilder = Callable[[str, int, int, bool], nn.Module]


def dense_linear(name: str, in_dim: int, out_dim: int, bias: bool = False) -> nn.Module:
    """The linear builder of a plain model: an ``nn.Linear`` for every name.

    Args:
        name (str): layer name (unused).
        in_dim (int): input features.
        out_dim (int): output features.
        bias (bool): with bias. Default False.

    Returns:
        nn.Module: ``nn.Linear(in_dim, out_dim, bias=bias)``.
    """
    return nn.Linear(in_dim, out_dim, bias=bias)


def frozen_nf4_linear(name: str, in_dim: int, out_dim: int, bias: bool = False) -> nn.Module:
    """The linear builder of a frozen 4-bit model: a :class:`FrozenNF4Linear` for every name.

    Args:
        name (str): layer name (unused).
        in_dim (int): input features.
        out_dim (int): output features.
        bias (bool): with a frozen bias. Default False.

    Returns:
        nn.Module: ``FrozenNF4Linear(in_dim, out_dim, bias=bias)``.
    """
    return FrozenNF4Linear(in_dim, out_dim, bias=bias)


def build_self_attention(
    linear: LinearBuilder,
    *,
    embed_dim: int,
    num_heads: int,
    num_kv_heads: int,
    head_dim: int,
    pos_embeddings: Optional[nn.Module],
    max_seq_len: int,
    attn_dropout: float = 0.0,
    qkv_bias: bool = False,
    output_bias: bool = False,
    q_norm: Optional[nn.Module] = None,
    k_norm: Optional[nn.Module] = None,
    kv_cache: Optional[KVCache] = None,
    is_causal: bool = True,
    sliding_window: Optional[int] = None,
    scale: Optional[float] = None,
    logit_softcapping: Optional[float] = None,
) -> MultiHeadAttention:
    """Self-attention whose ``q_proj``, ``k_proj``, ``v_proj`` and ``output_proj`` come from ``linear``.

    Args:
        linear (LinearBuilder): builds each projection from its name.
        embed_dim (int): model dimension.
        num_heads (int): query heads.
        num_kv_heads (int): key/value heads.
        head_dim (int): per-head size.
        pos_embeddings (Optional[nn.Module]): positional embedding applied to q and k.
        max_seq_len (int): longest sequence.
        attn_dropout (float): attention dropout. Default 0.0.
        qkv_bias (bool): biases on q/k/v projections (e.g. Qwen2). Default False.
        output_bias (bool): bias on the output projection. Default False.
        q_norm (Optional[nn.Module]): per-head query norm. Default None.
        k_norm (Optional[nn.Module]): per-head key norm. Default None.
        kv_cache (Optional[KVCache]): cache for decoding. Default None.
        is_causal (bool): causal attention when no mask is given. Default True.
        sliding_window (Optional[int]): attend only to this many most recent positions. Default None.
        scale (Optional[float]): multiplier of ``q k^T``; ``head_dim ** -0.5`` if None. Default None.
        logit_softcapping (Optional[float]): tanh cap of the attention scores (Gemma 2). Default None.

    Returns:
        MultiHeadAttention: the attention module.
    """
    return MultiHeadAttention(
        embed_dim=embed_dim,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        head_dim=head_dim,
        q_proj=linear("q_proj", embed_dim, num_heads * head_dim, qkv_bias),
        k_proj=linear("k_proj", embed_dim, num_kv_heads * head_dim, qkv_bias),
        v_proj=linear("v_proj", embed_dim, num_kv_heads * head_dim, qkv_bias),
        output_proj=linear("output_proj", num_heads * head_dim, embed_dim, output_bias),
        pos_embeddings=pos_embeddings,
        q_norm=q_norm,
        k_norm=k_norm,
        kv_cache=kv_cache,
        max_seq_len=max_seq_len,
        is_causal=is_causal,
        attn_dropout=attn_dropout,
        sliding_window=sliding_window,
        scale=scale,
        logit_softcapping=logit_softcapping,
    )


def build_mlp(
    linear: LinearBuilder,
    *,
    dim: int,
    hidden_dim: int,
    gated: bool = True,
    bias: bool = False,
    activation: Optional[nn.Module] = None,
) -> FeedForward:
    """MLP whose ``w1`` (gate), ``w2`` (down) and ``w3`` (up, if ``gated``) come from ``linear``.

    Args:
        linear (LinearBuilder): builds each projection from its name.
        dim (int): model dimension.
        hidden_dim (int): MLP width.
        gated (bool): gated MLP (``w2(act(w1 x) * w3 x)``, e.g. SwiGLU); else ``w2(act(w1 x))``.
            Default True.
        bias (bool): biases on all projections. Default False.
        activation (Optional[nn.Module]): non-linearity; ``nn.SiLU()`` if None.

    Returns:
        FeedForward: the MLP.
    """
    return FeedForward(
        gate_proj=linear("w1", dim, hidden_dim, bias),
        down_proj=linear("w2", hidden_dim, dim, bias),
        up_proj=linear("w3", dim, hidden_dim, bias) if gated else None,
        activation=activation if activation is not None else nn.SiLU(),
    )
