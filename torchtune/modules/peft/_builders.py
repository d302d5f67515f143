"""Model-family-independent builders for (optionally LoRA/DoRA/QLoRA-adapted) attention and MLPs.

A family builder creates one *linear builder* and passes it to the shared attention / MLP
builders below, together with what differs between families (biases, norms, activation).
The linear builder decides per layer name (``q_proj``, ``w1``, ``output``, ...) which kind of
linear layer to build, so a LoRA model and its base model share every other line.
"""

from typing import Callable, Collection, Optional

from torch import nn

from torchtune.modules.attention import MultiHeadAttention
from torchtune.modules.feed_forward import FeedForward
from torchtune.modules.kv_cache import KVCache
from torchtune.modules.low_precision.nf4_linear import FrozenNF4Linear
from torchtune.modules.peft.dora import DoRALinear
from torchtune.modules.peft.lora import LoRALinear

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


def lora_linear_builder(
    lora_modules: Collection[str],
    *,
    lora_rank: int,
    lora_alpha: float,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
    keep_dense: Collection[str] = ("output",),
) -> LinearBuilder:
    """A linear builder that adapts the layers named in ``lora_modules``.

    Layers in ``lora_modules`` become :class:`LoRALinear` (or :class:`DoRALinear`). With
    ``quantize_base`` every base weight is stored in NF4, adapted or not (unadapted layers
    become :class:`FrozenNF4Linear`), except the layers named in ``keep_dense``: by QLoRA
    convention the vocabulary projection ``output`` stays in full precision.

    Args:
        lora_modules (Collection[str]): layer names to adapt, e.g. from
            :func:`~torchtune.modules.peft.get_lora_module_names`.
        lora_rank (int): adapter rank.
        lora_alpha (float): adapter alpha (the update is scaled by ``alpha / rank``).
        lora_dropout (float): adapter input dropout. Default 0.0.
        use_dora (bool): build DoRA layers instead of LoRA. Default False.
        quantize_base (bool): store base weights in NF4 (QLoRA). Default False.
        keep_dense (Collection[str]): names never quantized. Default ``("output",)``.

    Returns:
        LinearBuilder: ``(name, in_dim, out_dim, bias) -> nn.Module``.
    """
    adapter_cls = DoRALinear if use_dora else LoRALinear
    lora_modules = frozenset(lora_modules)

    def build(name: str, in_dim: int, out_dim: int, bias: bool = False) -> nn.Module:
        quantize = quantize_base and name not in keep_dense
        if name in lora_modules:
            return adapter_cls(
                in_dim, out_dim, rank=lora_rank, alpha=lora_alpha, dropout=lora_dropout,
                use_bias=bias, quantize_base=quantize,
            )
        return (frozen_nf4_linear if quantize else dense_linear)(name, in_dim, out_dim, bias)

    return build


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
