"""One decoder assembly for every Llama-like family.

A family's component builder is its dimensions plus its quirks, passed to :func:`build_decoder`;
its LoRA, DoRA and QLoRA variants are the same call with another linear builder (see
:func:`torchtune.modules.peft.get_lora_linear_builder`). ``docs/model_stack.md`` walks through
adding a family.
"""

from typing import Callable, List, Optional, Sequence, TypeVar, Union

import torch
from torch import nn

from torchtune.modules.attention import MultiHeadAttention
from torchtune.modules.layer_builders import LinearBuilder, build_mlp, build_self_attention, dense_linear
from torchtune.modules.position_embeddings import RotaryPositionalEmbeddings
from torchtune.modules.rms_norm import RMSNorm
from torchtune.modules.tied_linear import TiedLinear
from torchtune.modules.transformer import TransformerDecoder, TransformerSelfAttentionLayer
from torchtune.utils._logging import get_logger

_log = get_logger()

# A checkpointer that knows the attention window of its checkpoint (Hugging Face ``config.json``
# ``sliding_window``) records it under this key in the state dict's metadata for the root module,
# ``state_dict._metadata[""]`` (where torch keeps module versions, and which ``load_state_dict``
# passes to load hooks). A decoder built here warns when its own windows differ.
CHECKPOINT_WINDOW_KEY = "checkpoint_sliding_window"

# dim, eps -> norm module over the last dimension
NormBuilder = Callable[..., nn.Module]
_T = TypeVar("_T")


class ScaledEmbedding(nn.Embedding):
    """Token embedding whose output is multiplied by a constant (Gemma scales by ``sqrt(dim)``).

    The weight is stored unscaled, as in Hugging Face checkpoints, so a tied output projection
    and weight conversion see the plain table.

    Args:
        num_embeddings (int): vocabulary size.
        embedding_dim (int): model dimension ``d``.
        scale (float): multiplier of the looked-up vectors.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, scale: float) -> None:
        super().__init__(num_embeddings, embedding_dim)
        self.scale = scale

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """
        Args:
            tokens (torch.Tensor): token ids ``[b, s]``.

        Returns:
            torch.Tensor: ``[b, s, d]``, scaled in the weight's dtype (as the reference models do).
        """
        h = super().forward(tokens)
        return h * torch.tensor(self.scale, dtype=h.dtype, device=h.device)


def _warn_on_window_mismatch(module: nn.Module, state_dict, prefix: str, local_metadata, *args) -> None:
    """Load pre-hook: warn, naming ``sliding_window``, when the checkpoint's window is not the model's.

    A window only changes attention for sequences longer than it, so a mismatch is a warning (a
    Mistral v0.1 checkpoint, window 4096, fine-tunes identically on shorter samples without one).
    """
    if prefix or CHECKPOINT_WINDOW_KEY not in local_metadata:
        return
    declared = local_metadata[CHECKPOINT_WINDOW_KEY]
    windows = [m.sliding_window for m in module.modules() if isinstance(m, MultiHeadAttention)]
    if isinstance(declared, list):  # one window per layer (Gemma 2 and 3: local and global layers)
        if declared != windows:
            _log.warning(
                f"The checkpoint's config.json has per-layer attention windows {declared} (None: global), but the "
                f"model was built with {windows}: attention differs for sequences longer than a window. Build the "
                f"model with the checkpoint's sliding_window and layer pattern."
            )
        return
    built = set(windows)
    if built <= {declared}:
        return
    has = "no sliding window (global attention)" if declared is None else f"sliding_window={declared}"
    model = ", ".join("global attention" if w is None else f"a {w}-token window" for w in sorted(built, key=str))
    _log.warning(
        f"The checkpoint's config.json has {has}, but the model was built with {model}: attention differs "
        f"for sequences longer than the window. Build the model with sliding_window={declared} "
        f"(for example mistral(..., sliding_window={declared})) to match the checkpoint."
    )


def _per_layer(value: Union[_T, Sequence[_T]], num_layers: int, name: str) -> List[_T]:
    """``value`` repeated for every layer, or the given per-layer list after a length check."""
    if isinstance(value, (list, tuple, nn.ModuleList)):
        if len(value) != num_layers:
            raise ValueError(f"{name} has {len(value)} entries, expected one per layer ({num_layers})")
        return list(value)
    return [value] * num_layers


def build_decoder(
    linear: LinearBuilder = dense_linear,
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
    norm: NormBuilder = RMSNorm,
    rope_base: float = 10_000.0,
    pos_embeddings: Union[None, nn.Module, Sequence[Optional[nn.Module]]] = None,
    qkv_bias: bool = False,
    attn_output_bias: bool = False,
    mlp_bias: bool = False,
    gated_mlp: bool = True,
    mlp_activation: Callable[[], nn.Module] = nn.SiLU,
    qk_norm: bool = False,
    sliding_window: Union[None, int, Sequence[Optional[int]]] = None,
    embed_scale: Optional[float] = None,
    tie_word_embeddings: bool = False,
    output_dim: Optional[int] = None,
    post_norms: bool = False,
    attn_scale: Optional[float] = None,
    attn_softcapping: Optional[float] = None,
    output_softcapping: Optional[float] = None,
) -> TransformerDecoder:
    """Assemble a pre-norm decoder: embeddings, ``num_layers`` attention + MLP blocks, norm, output.

    Every linear layer (``q_proj``, ``k_proj``, ``v_proj``, ``output_proj``, ``w1``, ``w2``,
    ``w3``, ``output``) is made by ``linear``, so the same call builds the plain, LoRA, DoRA or
    QLoRA model. Modules are created in a fixed order (positional embedding, then per layer the
    attention projections, the MLP and the two norms, then the embedding, final norm and
    output), so random initialisation is reproducible across families. Loading a state dict whose
    metadata records its checkpoint's attention window (``FullModelHFCheckpointer`` does, from
    config.json's ``sliding_window``) logs a warning when that window is not the model's.

    Args:
        linear (LinearBuilder): ``(name, in_dim, out_dim, bias) -> nn.Module``. Default
            :func:`~torchtune.modules.layer_builders.dense_linear`.
        vocab_size (int): number of tokens.
        num_layers (int): transformer layers.
        num_heads (int): query heads.
        num_kv_heads (int): key/value heads (``< num_heads``: GQA; 1: MQA).
        embed_dim (int): model dimension ``d``.
        intermediate_dim (int): MLP width.
        max_seq_len (int): longest sequence (sizes RoPE and the default KV cache).
        head_dim (Optional[int]): per-head size; ``embed_dim // num_heads`` if None.
        attn_dropout (float): attention dropout. Default 0.0.
        norm_eps (float): epsilon of every norm. Default 1e-5.
        norm (NormBuilder): ``norm(dim, eps=norm_eps)`` builds each norm. Default :class:`RMSNorm`.
        rope_base (float): RoPE base, used when ``pos_embeddings`` is None. Default 10000.0.
        pos_embeddings (Union[None, nn.Module, Sequence[Optional[nn.Module]]]): module applied to
            q and k (shared by all layers), or one per layer (None: no positional embedding in
            that layer). Default: RoPE over ``head_dim`` with ``rope_base``.
        qkv_bias (bool): biases on the q/k/v projections (Qwen2). Default False.
        attn_output_bias (bool): bias on the attention output projection. Default False.
        mlp_bias (bool): biases on the MLP projections. Default False.
        gated_mlp (bool): ``w2(act(w1 x) * w3 x)`` (SwiGLU/GeGLU); else ``w2(act(w1 x))``. Default True.
        mlp_activation (Callable[[], nn.Module]): builds the MLP non-linearity. Default ``nn.SiLU``.
        qk_norm (bool): normalise queries and keys per head (``norm(head_dim)``) before RoPE.
            Default False.
        sliding_window (Union[None, int, Sequence[Optional[int]]]): attention window of every
            layer, or one entry per layer (None: global attention). Default None.
        embed_scale (Optional[float]): multiply the token embeddings by this (Gemma:
            ``sqrt(embed_dim)``). Default None.
        tie_word_embeddings (bool): the output projection reuses the embedding weight. Default False.
        output_dim (Optional[int]): width of the output projection, ``[b, s, d] -> [b, s, output_dim]``;
            ``vocab_size`` if None. A classifier or reward model passes its number of classes
            (1 for a reward model). Default None.
        post_norms (bool): also normalise the outputs of attention and MLP before each residual
            add, ``h = x + norm(attn(norm(x)))`` (Gemma 2 and 3); the post-norms are the layer's
            ``sa_scale`` and ``mlp_scale``. Default False.
        attn_scale (Optional[float]): multiplier of the attention scores ``q k^T``; ``head_dim ** -0.5``
            if None (Gemma 2 and 3: ``query_pre_attn_scalar ** -0.5``). Default None.
        attn_softcapping (Optional[float]): cap every attention score at ``c * tanh(s / c)``
            (Gemma 2: 50). Default None.
        output_softcapping (Optional[float]): cap the logits the same way (Gemma 2: 30). Default None.

    Returns:
        TransformerDecoder: the model, randomly initialised (nn defaults).

    Raises:
        ValueError: if ``num_heads`` is not divisible by ``num_kv_heads``; if ``head_dim`` is None
            and ``embed_dim`` is not divisible by ``num_heads``; if a per-layer list has the wrong
            length; if ``linear`` would put an adapter on a tied output projection; or if
            ``output_dim`` differs from ``vocab_size`` with tied embeddings; or if a soft-cap is not
            positive.
    """
    if num_heads % num_kv_heads != 0:
        raise ValueError(f"num_heads ({num_heads}) must be divisible by num_kv_heads ({num_kv_heads})")
    if head_dim is None:
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        head_dim = embed_dim // num_heads
    if tie_word_embeddings and "output" in getattr(linear, "adapted_names", ()):
        raise ValueError("apply_lora_to_output is not supported with tied embeddings: the output "
                         "projection is the embedding table; set apply_lora_to_output=False")
    if tie_word_embeddings and output_dim not in (None, vocab_size):
        raise ValueError(f"output_dim ({output_dim}) must equal vocab_size ({vocab_size}) with tied embeddings: "
                         "a tied output projection is the embedding table")
    for name, cap in (("attn_softcapping", attn_softcapping), ("output_softcapping", output_softcapping)):
        if cap is not None and cap <= 0:
            raise ValueError(f"{name} ({cap}) must be a positive cap, or None for none")
    if pos_embeddings is None:
        pos_embeddings = RotaryPositionalEmbeddings(dim=head_dim, max_seq_len=max_seq_len, base=rope_base)
    layer_pos = _per_layer(pos_embeddings, num_layers, "pos_embeddings")
    layer_window = _per_layer(sliding_window, num_layers, "sliding_window")

    layers = []
    for pos, window in zip(layer_pos, layer_window):
        attn = build_self_attention(
            linear,
            embed_dim=embed_dim,
            num_heads=num_heads,
            num_kv_heads=num_kv_heads,
            head_dim=head_dim,
            pos_embeddings=pos,
            max_seq_len=max_seq_len,
            attn_dropout=attn_dropout,
            qkv_bias=qkv_bias,
            output_bias=attn_output_bias,
            q_norm=norm(head_dim, eps=norm_eps) if qk_norm else None,
            k_norm=norm(head_dim, eps=norm_eps) if qk_norm else None,
            sliding_window=window,
            scale=attn_scale,
            logit_softcapping=attn_softcapping,
        )
        mlp = build_mlp(linear, dim=embed_dim, hidden_dim=intermediate_dim, gated=gated_mlp, bias=mlp_bias,
                        activation=mlp_activation())
        sa_norm, mlp_norm = norm(embed_dim, eps=norm_eps), norm(embed_dim, eps=norm_eps)
        # Created after the pre-norms, so that models without post-norms draw the same random init.
        sa_scale = norm(embed_dim, eps=norm_eps) if post_norms else None
        mlp_scale = norm(embed_dim, eps=norm_eps) if post_norms else None
        layers.append(TransformerSelfAttentionLayer(
            attn=attn, mlp=mlp, sa_norm=sa_norm, mlp_norm=mlp_norm, sa_scale=sa_scale, mlp_scale=mlp_scale
        ))
    if embed_scale is None:
        tok_embeddings = nn.Embedding(vocab_size, embed_dim)
    else:
        tok_embeddings = ScaledEmbedding(vocab_size, embed_dim, scale=embed_scale)
    final_norm = norm(embed_dim, eps=norm_eps)
    if tie_word_embeddings:
        output = TiedLinear(tok_embeddings)
    else:
        output = linear("output", embed_dim, vocab_size if output_dim is None else output_dim, False)
    decoder = TransformerDecoder(
        tok_embeddings=tok_embeddings,
        layers=nn.ModuleList(layers),
        max_seq_len=max_seq_len,
        num_heads=num_heads,
        head_dim=head_dim,
        norm=final_norm,
        output=output,
        output_softcapping=output_softcapping,
    )
    decoder.register_load_state_dict_pre_hook(_warn_on_window_mismatch)
    return decoder

