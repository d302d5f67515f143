"""The generic decoder builder: every block-library choice as a string (or a component), so a YAML
config describes a stack without Python.

``decoder(...)`` resolves each choice to modules of :mod:`torchtune.modules` and assembles them;
``lora_decoder(...)`` is the same call with the linear builder of
:func:`torchtune.modules.peft.get_lora_linear_builder`. docs/blocks.md lists every choice.
"""

import difflib
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from torch import nn

from torchtune.modules.attention import MultiHeadAttention
from torchtune.modules.attention_backends import ChunkedBackend, FlexBackend, MathBackend
from torchtune.modules.decoder_builder import ScaledEmbedding
from torchtune.modules.block_layers import ParallelTransformerLayer, ReLUSquared, TransformerBlockLayer
from torchtune.modules.input_embeddings import (
    L2NormEmbedding,
    LearnedPositionalEmbedding,
    MemoryTokens,
    PostEmbedding,
    SinusoidalPositionalEmbedding,
)
from torchtune.modules.layer_builders import LinearBuilder, build_mlp, dense_linear
from torchtune.modules.layer_norm import Fp32LayerNorm
from torchtune.modules.linear_attention import EluFeatureMap, LinearAttention, ReluFeatureMap
from torchtune.modules.peft import LORA_ATTN_MODULES, get_lora_linear_builder
from torchtune.modules.position_bias import (
    ALiBiPositionBias,
    PartialRotaryPositionalEmbeddings,
    T5RelativePositionBias,
)
from torchtune.modules.position_embeddings import RotaryPositionalEmbeddings
from torchtune.modules.rms_norm import RMSNorm
from torchtune.modules.tied_linear import TiedLinear
from torchtune.modules.transformer import TransformerDecoder

ATTENTION_CHOICES = ("softmax", "linear")
BACKEND_CHOICES = ("sdpa", "flex", "chunked", "math")
# Inside attention (per layer) vs. added once to the embeddings (a single choice for the model).
LAYER_POSITIONAL_CHOICES = ("rope", "partial_rope", "alibi", "t5", "none")
ABSOLUTE_POSITIONAL_CHOICES = ("sinusoidal", "scaled_sinusoidal", "learned")
POSITIONAL_CHOICES = LAYER_POSITIONAL_CHOICES + ABSOLUTE_POSITIONAL_CHOICES
NORM_CHOICES = ("rmsnorm", "gemma_rmsnorm", "layernorm", "layernorm_no_bias")
PLACEMENT_CHOICES = ("pre", "post", "both")
FFN_CHOICES = ("swiglu", "geglu", "gelu", "relu", "relu2")
FEATURE_MAP_CHOICES = ("elu", "relu")

Choice = Union[str, Any]


def _check_choice(value: str, options: Sequence[str], key: str) -> str:
    """``value`` if it is one of ``options``; else a one-line error with the closest valid name."""
    if value in options:
        return value
    close = difflib.get_close_matches(str(value), options, n=1, cutoff=0.0)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown {key} {value!r}{hint} (valid: {', '.join(options)})")


def _per_layer(value: Any, num_layers: int, key: str) -> List[Any]:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ListConfig":
        value = list(value)
        if len(value) != num_layers:
            raise ValueError(f"{key} has {len(value)} entries, expected one per layer ({num_layers})")
        return value
    return [value] * num_layers


def _norm_builder(norm: Choice) -> Callable[..., nn.Module]:
    if not isinstance(norm, str):
        return norm  # a component: norm(dim, eps=eps)
    choice = _check_choice(norm, NORM_CHOICES, "norm")
    if choice == "rmsnorm":
        return RMSNorm
    if choice == "gemma_rmsnorm":
        from torchtune.models.gemma.rms_norm import GemmaRMSNorm  # (1 + w) gain, zero-initialised w

        return GemmaRMSNorm
    if choice == "layernorm":
        return lambda dim, eps: Fp32LayerNorm(dim, eps=eps)
    return lambda dim, eps: Fp32LayerNorm(dim, eps=eps, bias=False)


def _ffn(choice: Choice, linear: LinearBuilder, dim: int, hidden_dim: int, bias: bool) -> nn.Module:
    if not isinstance(choice, str):
        return choice(linear, dim, hidden_dim)  # a component: (linear, dim, hidden_dim) -> module
    choice = _check_choice(choice, FFN_CHOICES, "ffn")
    gated = choice in ("swiglu", "geglu")
    activation = {
        "swiglu": nn.SiLU(),
        "geglu": nn.GELU(approximate="tanh"),
        "gelu": nn.GELU(),
        "relu": nn.ReLU(),
        "relu2": ReLUSquared(),
    }[choice]
    return build_mlp(linear, dim=dim, hidden_dim=hidden_dim, gated=gated, bias=bias, activation=activation)


def _backend(choice: Choice, chunk_size: int, attn_dropout: float, layer: int) -> Optional[nn.Module]:
    if not isinstance(choice, str):
        return choice
    choice = _check_choice(choice, BACKEND_CHOICES, "attention_backend")
    if choice in ("flex", "chunked") and attn_dropout > 0.0:
        raise ValueError(f"attention_backend {choice!r} (layer {layer}) does not support attn_dropout "
                         f"({attn_dropout}); use 'sdpa' or 'math'")
    if choice == "sdpa":
        return None  # MultiHeadAttention's own SDPA path (with the bf16 CPU fast path)
    if choice == "math":
        return MathBackend()
    if choice == "chunked":
        return ChunkedBackend(chunk_size)
    return FlexBackend()


def decoder(
    *,
    vocab_size: int,
    num_layers: int,
    num_heads: int,
    embed_dim: int,
    intermediate_dim: int,
    max_seq_len: int,
    num_kv_heads: Optional[int] = None,
    head_dim: Optional[int] = None,
    attention: Union[Choice, List[Choice]] = "softmax",
    attention_backend: Union[Choice, List[Choice]] = "sdpa",
    positional: Union[Choice, List[Choice]] = "rope",
    rope_base: float = 10_000.0,
    rope_fraction: float = 0.5,
    t5_num_buckets: int = 32,
    t5_max_distance: int = 128,
    sliding_window: Union[None, int, List[Optional[int]]] = None,
    norm: Choice = "rmsnorm",
    norm_eps: float = 1e-5,
    attn_norm_placement: Union[str, List[str]] = "pre",
    mlp_norm_placement: Union[str, List[str]] = "pre",
    qk_norm: bool = False,
    post_embedding_norm: bool = False,
    l2norm_embeddings: bool = False,
    ffn: Union[Choice, List[Choice]] = "swiglu",
    ffn_bias: bool = False,
    qkv_bias: bool = False,
    attn_output_bias: bool = False,
    parallel_residual: bool = False,
    attn_dropout: float = 0.0,
    attn_scale: Optional[float] = None,
    attn_softcapping: Optional[float] = None,
    chunk_size: int = 256,
    feature_map: Choice = "elu",
    embed_scale: Optional[float] = None,
    tie_word_embeddings: bool = False,
    output_softcapping: Optional[float] = None,
    num_memory_tokens: int = 0,
    logits_dim: Optional[int] = None,
    packed: bool = False,
    linear: LinearBuilder = dense_linear,
) -> TransformerDecoder:
    """A decoder assembled from named block choices (docs/blocks.md has the table).

    Every ``List`` argument also takes a single value for all layers. Choices are strings, or
    components: a module for ``positional`` (applied to q and k) and ``attention_backend``, a
    callable ``norm(dim, eps=)`` for ``norm``, a callable ``(linear, dim, hidden_dim) -> module``
    for ``ffn``, a module for ``feature_map``.

    Args:
        vocab_size (int): tokens.
        num_layers (int): layers.
        num_heads (int): query heads.
        embed_dim (int): model dimension ``d``.
        intermediate_dim (int): MLP width.
        max_seq_len (int): longest token sequence (memory tokens come on top).
        num_kv_heads (Optional[int]): key/value heads (MHA if None, 1 for MQA, between for GQA).
        head_dim (Optional[int]): per-head size; ``embed_dim // num_heads`` if None.
        attention (Union[Choice, List[Choice]]): ``softmax`` or ``linear`` (a kernel feature map,
            causal running sums) per layer. Default ``softmax``.
        attention_backend (Union[Choice, List[Choice]]): ``sdpa``, ``flex``, ``chunked`` or ``math``
            per softmax layer. Default ``sdpa``.
        positional (Union[Choice, List[Choice]]): ``rope``, ``partial_rope``, ``alibi``, ``t5``,
            ``none`` (per layer), or ``sinusoidal``, ``scaled_sinusoidal``, ``learned`` (added to the
            embeddings; a single value). Default ``rope``.
        rope_base (float): RoPE base. Default 10000.
        rope_fraction (float): share of each head rotated by ``partial_rope``. Default 0.5.
        t5_num_buckets (int): buckets of the ``t5`` bias. Default 32.
        t5_max_distance (int): distance of the last ``t5`` bucket. Default 128.
        sliding_window (Union[None, int, List[Optional[int]]]): causal window per layer (None:
            global). Default None.
        norm (Choice): ``rmsnorm``, ``gemma_rmsnorm`` (``(1 + w)`` gain), ``layernorm`` or
            ``layernorm_no_bias``. Default ``rmsnorm``.
        norm_eps (float): epsilon of every norm. Default 1e-5.
        attn_norm_placement (Union[str, List[str]]): ``pre``, ``post`` or ``both`` around
            attention, per layer. Default ``pre``.
        mlp_norm_placement (Union[str, List[str]]): the same around the MLP. Default ``pre``.
        qk_norm (bool): per-head norm of queries and keys before RoPE. Default False.
        post_embedding_norm (bool): a norm right after the embeddings (and absolute positions). Default False.
        l2norm_embeddings (bool): token embeddings l2-normalised on lookup. Default False.
        ffn (Union[Choice, List[Choice]]): ``swiglu``, ``geglu`` (tanh GELU), ``gelu``, ``relu`` or
            ``relu2`` per layer. Default ``swiglu``.
        ffn_bias (bool): biases in the MLP. Default False.
        qkv_bias (bool): biases on q/k/v. Default False.
        attn_output_bias (bool): bias on the attention output projection. Default False.
        parallel_residual (bool): attention and MLP in parallel from one input (GPT-J / NeoX). Default False.
        attn_dropout (float): attention-probability dropout. Default 0.0.
        attn_scale (Optional[float]): score multiplier; ``head_dim ** -0.5`` if None. Default None.
        attn_softcapping (Optional[float]): tanh cap of attention scores. Default None.
        chunk_size (int): query chunk of the ``chunked`` backend. Default 256.
        feature_map (Choice): ``elu`` (``elu + 1``) or ``relu`` for ``linear`` attention. Default ``elu``.
        embed_scale (Optional[float]): multiply token embeddings by this. Default None.
        tie_word_embeddings (bool): output projection is the embedding table. Default False.
        output_softcapping (Optional[float]): tanh cap of the logits. Default None.
        num_memory_tokens (int): learned tokens prepended to every sequence, kept out of the
            logits and the loss. Default 0.
        logits_dim (Optional[int]): width of the output projection; ``vocab_size`` if None. Default None.
        packed (bool): the model will see packed batches (interpolate ``${dataset.packed}``), so
            that choices needing one causal sequence are refused now. Default False.
        linear (LinearBuilder): builds every projection (dense; LoRA through :func:`lora_decoder`).

    Returns:
        TransformerDecoder: the model.

    Raises:
        ValueError: on an unknown choice name (naming the closest valid one), a per-layer list of
            the wrong length, or an impossible combination: an odd number of partial-RoPE
            channels, memory tokens or linear attention with ``packed``, linear attention with
            an in-attention position scheme or a window, ``post`` placement with a parallel
            residual, absolute positions in a per-layer list, dropout with ``flex``/``chunked``,
            tied embeddings with another ``logits_dim`` or an adapted output.
    """
    num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
    if num_heads % num_kv_heads != 0:
        raise ValueError(f"num_heads ({num_heads}) must be divisible by num_kv_heads ({num_kv_heads})")
    if head_dim is None:
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        head_dim = embed_dim // num_heads
    if num_memory_tokens < 0:
        raise ValueError(f"num_memory_tokens must be >= 0, got {num_memory_tokens}")
    if num_memory_tokens and packed:
        raise ValueError("num_memory_tokens > 0 cannot be combined with packed=True: memory tokens are "
                         "prepended to one causal sequence, a packed batch holds several documents")
    if tie_word_embeddings and logits_dim not in (None, vocab_size):
        raise ValueError(f"logits_dim ({logits_dim}) must equal vocab_size ({vocab_size}) with tie_word_embeddings")
    if tie_word_embeddings and "output" in getattr(linear, "adapted_names", ()):
        raise ValueError("apply_lora_to_output is not supported with tie_word_embeddings: the output "
                         "projection is the embedding table")
    norm_builder = _norm_builder(norm)
    total_len = max_seq_len + num_memory_tokens  # memory tokens take the first positions

    # Absolute positions are one choice for the model; everything else is per layer.
    absolute = None
    if isinstance(positional, str) and positional in ABSOLUTE_POSITIONAL_CHOICES:
        absolute, positional = positional, "none"
    layer_positional = _per_layer(positional, num_layers, "positional")
    for i, p in enumerate(layer_positional):
        if isinstance(p, str) and p in ABSOLUTE_POSITIONAL_CHOICES:
            raise ValueError(f"positional[{i}] is {p!r}: absolute positions are added once to the embeddings, "
                             "give them as the single positional value, not in a per-layer list")
        if isinstance(p, str):
            _check_choice(p, POSITIONAL_CHOICES, f"positional[{i}]" if isinstance(positional, list) else "positional")
    layer_attention = _per_layer(attention, num_layers, "attention")
    layer_backend = _per_layer(attention_backend, num_layers, "attention_backend")
    layer_window = _per_layer(sliding_window, num_layers, "sliding_window")
    layer_ffn = _per_layer(ffn, num_layers, "ffn")
    layer_attn_place = _per_layer(attn_norm_placement, num_layers, "attn_norm_placement")
    layer_mlp_place = _per_layer(mlp_norm_placement, num_layers, "mlp_norm_placement")
    if isinstance(feature_map, str):
        feature_map = {"elu": EluFeatureMap, "relu": ReluFeatureMap}[
            _check_choice(feature_map, FEATURE_MAP_CHOICES, "feature_map")]()

    # One RoPE / partial RoPE module is shared by every layer that uses it (no parameters).
    shared: Dict[str, nn.Module] = {}

    def positional_module(p: Choice, i: int):
        """(pos_embeddings, attn_bias) of layer ``i``."""
        if not isinstance(p, str):
            return p, None
        if p == "rope":
            if "rope" not in shared:
                shared["rope"] = RotaryPositionalEmbeddings(head_dim, max_seq_len=total_len, base=rope_base)
            return shared["rope"], None
        if p == "partial_rope":
            if "partial_rope" not in shared:
                shared["partial_rope"] = PartialRotaryPositionalEmbeddings(
                    head_dim, rope_fraction, max_seq_len=total_len, base=rope_base)
            return shared["partial_rope"], None
        if p == "alibi":
            return None, ALiBiPositionBias(num_heads)
        if p == "t5":
            return None, T5RelativePositionBias(num_heads, num_buckets=t5_num_buckets, max_distance=t5_max_distance)
        return None, None

    layers = []
    for i in range(num_layers):
        kind = layer_attention[i]
        attn_place = _check_choice(layer_attn_place[i], PLACEMENT_CHOICES, "attn_norm_placement")
        mlp_place = _check_choice(layer_mlp_place[i], PLACEMENT_CHOICES, "mlp_norm_placement")
        if parallel_residual and "post" in (attn_place, mlp_place):
            raise ValueError("parallel_residual needs 'pre' or 'both' norm placement: with 'post' the attention "
                             "and MLP would not read the same input")
        projections = dict(
            q_proj=linear("q_proj", embed_dim, num_heads * head_dim, qkv_bias),
            k_proj=linear("k_proj", embed_dim, num_kv_heads * head_dim, qkv_bias),
            v_proj=linear("v_proj", embed_dim, num_kv_heads * head_dim, qkv_bias),
            output_proj=linear("output_proj", num_heads * head_dim, embed_dim, attn_output_bias),
        )
        if isinstance(kind, str) and _check_choice(kind, ATTENTION_CHOICES, "attention") == "linear":
            p = layer_positional[i]
            if not (isinstance(p, str) and p == "none"):
                raise ValueError(f"attention 'linear' (layer {i}) has no score matrix for positional {p!r}; "
                                 "use positional 'none', 'sinusoidal', 'scaled_sinusoidal' or 'learned'")
            if layer_window[i] is not None:
                raise ValueError(f"attention 'linear' (layer {i}) cannot have a sliding_window")
            if packed:
                raise ValueError("attention 'linear' cannot be combined with packed=True: its running sums "
                                 "span the whole sequence")
            if qk_norm or attn_softcapping is not None or attn_scale is not None:
                raise ValueError(f"attention 'linear' (layer {i}) takes no qk_norm, attn_softcapping or attn_scale")
            attn = LinearAttention(embed_dim=embed_dim, num_heads=num_heads, num_kv_heads=num_kv_heads,
                                   head_dim=head_dim, feature_map=feature_map, **projections)
        elif isinstance(kind, str):
            pos, bias = positional_module(layer_positional[i], i)
            attn = MultiHeadAttention(
                embed_dim=embed_dim, num_heads=num_heads, num_kv_heads=num_kv_heads, head_dim=head_dim,
                pos_embeddings=pos, attn_bias=bias, max_seq_len=total_len, attn_dropout=attn_dropout,
                q_norm=norm_builder(head_dim, eps=norm_eps) if qk_norm else None,
                k_norm=norm_builder(head_dim, eps=norm_eps) if qk_norm else None,
                sliding_window=layer_window[i], scale=attn_scale, logit_softcapping=attn_softcapping,
                backend=_backend(layer_backend[i], chunk_size, attn_dropout, i), **projections,
            )
        else:
            attn = kind(linear=linear, embed_dim=embed_dim, num_heads=num_heads, num_kv_heads=num_kv_heads,
                        head_dim=head_dim, max_seq_len=total_len)
        mlp = _ffn(layer_ffn[i], linear, embed_dim, intermediate_dim, ffn_bias)

        def placed(place: str):
            """(norm before, norm of the branch output, norm after the residual) for one sub-layer."""
            return (norm_builder(embed_dim, eps=norm_eps) if place in ("pre", "both") else None,
                    norm_builder(embed_dim, eps=norm_eps) if place == "both" else None,
                    norm_builder(embed_dim, eps=norm_eps) if place == "post" else None)

        sa_norm, sa_scale, sa_residual = placed(attn_place)
        mlp_norm, mlp_scale, mlp_residual = placed(mlp_place)
        if parallel_residual:
            layers.append(ParallelTransformerLayer(attn, mlp, sa_norm=sa_norm, mlp_norm=mlp_norm,
                                                   sa_scale=sa_scale, mlp_scale=mlp_scale))
        else:
            layers.append(TransformerBlockLayer(attn, mlp, sa_norm=sa_norm, mlp_norm=mlp_norm, sa_scale=sa_scale,
                                                mlp_scale=mlp_scale, sa_residual_norm=sa_residual,
                                                mlp_residual_norm=mlp_residual))

    if l2norm_embeddings:
        if embed_scale is not None:
            raise ValueError("l2norm_embeddings and embed_scale cannot be combined (the scale would be undone)")
        tok_embeddings = L2NormEmbedding(vocab_size, embed_dim)
    elif embed_scale is not None:
        tok_embeddings = ScaledEmbedding(vocab_size, embed_dim, scale=embed_scale)
    else:
        tok_embeddings = nn.Embedding(vocab_size, embed_dim)
    abs_module = None
    if absolute in ("sinusoidal", "scaled_sinusoidal"):
        scale = embed_dim ** -0.5 if absolute == "scaled_sinusoidal" else 1.0
        abs_module = SinusoidalPositionalEmbedding(embed_dim, total_len, scale=scale)
    elif absolute == "learned":
        abs_module = LearnedPositionalEmbedding(total_len, embed_dim)
    post_embedding = None
    if abs_module is not None or post_embedding_norm:
        post_embedding = PostEmbedding(abs_module, norm_builder(embed_dim, eps=norm_eps) if post_embedding_norm
                                       else None)
    # A post-norm stack already ends on a norm; a second one is harmless but not the usual model.
    final_norm = norm_builder(embed_dim, eps=norm_eps)
    if tie_word_embeddings:
        output = TiedLinear(tok_embeddings)
    else:
        output = linear("output", embed_dim, vocab_size if logits_dim is None else logits_dim, False)
    return TransformerDecoder(
        tok_embeddings=tok_embeddings,
        layers=nn.ModuleList(layers),
        max_seq_len=total_len,
        num_heads=num_heads,
        head_dim=head_dim,
        norm=final_norm,
        output=output,
        output_softcapping=output_softcapping,
        post_embedding=post_embedding,
        memory_tokens=MemoryTokens(num_memory_tokens, embed_dim) if num_memory_tokens else None,
    )


def lora_decoder(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    *,
    lora_rank: int,
    lora_alpha: float,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
    **kwargs: Any,
) -> TransformerDecoder:
    """:func:`decoder` with LoRA (DoRA with ``use_dora``, QLoRA with ``quantize_base``) on the chosen projections.

    Args:
        lora_attn_modules (List[LORA_ATTN_MODULES]): any of ``q_proj``, ``k_proj``, ``v_proj``, ``output_proj``.
        apply_lora_to_mlp (bool): adapt ``w1``, ``w2``, ``w3``. Default False.
        apply_lora_to_output (bool): adapt the output projection. Default False.
        lora_rank (int): adapter rank.
        lora_alpha (float): adapter alpha.
        lora_dropout (float): adapter dropout. Default 0.0.
        use_dora (bool): DoRA. Default False.
        quantize_base (bool): NF4 base weights. Default False.
        **kwargs (Any): :func:`decoder`'s arguments.

    Returns:
        TransformerDecoder: the adapted model.
    """
    kwargs["linear"] = get_lora_linear_builder(
        lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, lora_rank=lora_rank, lora_alpha=lora_alpha,
        lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )
    return decoder(**kwargs)
