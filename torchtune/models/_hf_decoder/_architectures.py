"""Each supported Hugging Face ``model_type``: the blocks it is made of, and its parameter names.

An :class:`Architecture` is two functions of the parsed config.json: the keyword arguments of
:func:`torchtune.modules.build_decoder` (dimensions, norms, biases, windows, RoPE), and the
name rules that convert its checkpoints both ways (:mod:`._names`). A new architecture that our
blocks already express is a new entry here, nothing else.
"""

import math
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Dict, List, Optional

import torch
from torch import nn

from torchtune.models._decoder import decoder
from torchtune.models._hf_decoder._config import (
    activation_of, head_dim_of, HFConfig, layer_types_of, layer_windows, rope_spec, UnsupportedConfigError,
)
from torchtune.models._hf_decoder._names import Fused, Ignore, Rename, Rule, split_per_head, split_rows
from torchtune.models._hf_decoder._rope import HFRotaryEmbeddings
from torchtune.models.gemma.rms_norm import GemmaRMSNorm
from torchtune.modules.decoder_builder import build_decoder
from torchtune.modules.layer_builders import build_mlp
from torchtune.modules.rms_norm import RMSNorm


@dataclass(frozen=True)
class Architecture:
    """How one ``model_type`` maps onto our blocks.

    Attributes:
        build_kwargs (Callable[[HFConfig, int], Dict[str, Any]]): ``(config, max_seq_len)`` ->
            keyword arguments of ``build_decoder`` (without the linear builder).
        rules (Callable[[HFConfig], List[Rule]]): parameter-name rules for the config.
        description (str): one line for docs/hf_models.md.
        assembly (Callable[..., Any]): the assembly the kwargs are for: ``build_decoder`` (the
            families' one), or the block library's ``torchtune.models.decoder`` for blocks only it
            has (parallel residuals, absolute positions, ALiBi). Default ``build_decoder``.
        base_prefix (str): prefix of the base model's tensors (``transformer.``), which
            checkpoints of the bare base model leave out. Default "".
        post_build (Optional[Callable[[nn.Module, HFConfig, Callable[..., nn.Module]], None]]):
            ``(model, config, linear)`` adjusts the built model where the checkpoint differs from
            what the assembly builds (one norm for two branches, an output bias), making any new
            projection with the same linear builder (so LoRA applies to it). Default None.
    """

    build_kwargs: Callable[[HFConfig, int], Dict[str, Any]]
    rules: Callable[[HFConfig], List[Rule]]
    description: str
    assembly: Callable[..., Any] = build_decoder
    base_prefix: str = ""
    post_build: Optional[Callable[[nn.Module, HFConfig, Callable[..., nn.Module]], None]] = None


_RMS = {"scale": "weight"}  # our RMSNorm's parameter is ``scale``; theirs is ``weight``


def _rope_modules(config: HFConfig, head_dim: int, num_layers: int, max_seq_len: int) -> Any:
    """One RoPE module for all layers, or one per layer type when config.json gives settings per type."""
    params = config.get("rope_parameters") or {}
    if not (params and all(isinstance(v, dict) for v in params.values())):
        return HFRotaryEmbeddings(head_dim, rope_spec(config, head_dim), max_seq_len=max_seq_len)
    types = layer_types_of(config, num_layers)
    if types is None:
        raise config.unsupported("rope_parameters", "settings per layer type need a layer_types list")
    modules = {t: HFRotaryEmbeddings(head_dim, rope_spec(config, head_dim, layer_type=t), max_seq_len=max_seq_len)
               for t in dict.fromkeys(types)}
    return [modules[t] for t in types]


def _dims(config: HFConfig, max_seq_len: int) -> Dict[str, Any]:
    """The dimensions of a config that names them the Llama way (``hidden_size``, ``num_hidden_layers``, ...)."""
    num_heads = int(config.need("num_attention_heads"))
    return dict(
        vocab_size=int(config.need("vocab_size")),
        num_layers=int(config.need("num_hidden_layers")),
        num_heads=num_heads,
        num_kv_heads=int(config.get("num_key_value_heads") or num_heads),
        embed_dim=int(config.need("hidden_size")),
        intermediate_dim=int(config.need("intermediate_size")),
        max_seq_len=max_seq_len,
        head_dim=head_dim_of(config),
    )


def _rope(config: HFConfig, dims: Dict[str, Any], partial_rotary_factor: Any = None) -> HFRotaryEmbeddings:
    """One RoPE module for every layer, over ``dims``' heads."""
    spec = rope_spec(config, dims["head_dim"], partial_rotary_factor=partial_rotary_factor)
    return HFRotaryEmbeddings(dims["head_dim"], spec, max_seq_len=dims["max_seq_len"])


def _common(config: HFConfig, max_seq_len: int, *, default_sliding: bool = False) -> Dict[str, Any]:
    """Dimensions, RoPE and windows of a ``build_decoder`` architecture."""
    if config.get("use_bidirectional_attention"):
        raise config.unsupported("use_bidirectional_attention", "our decoders attend causally")
    dims = _dims(config, max_seq_len)
    return dict(
        dims,
        pos_embeddings=_rope_modules(config, dims["head_dim"], dims["num_layers"], max_seq_len),
        sliding_window=layer_windows(config, dims["num_layers"], default_sliding),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        mlp_activation=activation_of(config),
    )


def _llama_rules(config: HFConfig, *, mlp=("gate_proj", "down_proj", "up_proj"), norm_params=_RMS,
                 qk_norm: bool = False) -> List[Rule]:
    """The Llama layout: ``model.layers.{i}.self_attn.q_proj`` ..., norms and MLP by name."""
    layer = "model.layers.{i}"
    rules: List[Rule] = [
        Rename("tok_embeddings", "model.embed_tokens"),
        Rename("layers.{i}.attn.q_proj", f"{layer}.self_attn.q_proj"),
        Rename("layers.{i}.attn.k_proj", f"{layer}.self_attn.k_proj"),
        Rename("layers.{i}.attn.v_proj", f"{layer}.self_attn.v_proj"),
        Rename("layers.{i}.attn.output_proj", f"{layer}.self_attn.o_proj"),
        Rename("layers.{i}.sa_norm", f"{layer}.input_layernorm", norm_params),
        Rename("layers.{i}.mlp_norm", f"{layer}.post_attention_layernorm", norm_params),
        Rename("norm", "model.norm", norm_params),
        Rename("output", "lm_head"),
    ]
    for ours, theirs in zip(("w1", "w2", "w3"), mlp):
        if theirs is not None:
            rules.append(Rename(f"layers.{{i}}.mlp.{ours}", f"{layer}.mlp.{theirs}"))
    if qk_norm:
        rules += [Rename("layers.{i}.attn.q_norm", f"{layer}.self_attn.q_norm", norm_params),
                  Rename("layers.{i}.attn.k_norm", f"{layer}.self_attn.k_norm", norm_params)]
    return rules


# ---------------------------------------------------------------- the architectures

def _llama(config: HFConfig, max_seq_len: int) -> Dict[str, Any]:
    bias = bool(config.get("attention_bias", False))
    return dict(_common(config, max_seq_len), norm_eps=float(config.get("rms_norm_eps") or 1e-6), norm=RMSNorm,
                qkv_bias=bias, attn_output_bias=bias, mlp_bias=bool(config.get("mlp_bias", False)))


def _mistral(config: HFConfig, max_seq_len: int) -> Dict[str, Any]:
    return dict(_common(config, max_seq_len, default_sliding=True), norm_eps=float(config.get("rms_norm_eps") or 1e-6))


def _qwen2(config: HFConfig, max_seq_len: int) -> Dict[str, Any]:
    # Qwen2 always has q/k/v biases and none on the output projection.
    return dict(_common(config, max_seq_len), norm_eps=float(config.get("rms_norm_eps") or 1e-6), qkv_bias=True)


def _qwen3(config: HFConfig, max_seq_len: int) -> Dict[str, Any]:
    bias = bool(config.get("attention_bias", False))
    return dict(_common(config, max_seq_len), norm_eps=float(config.get("rms_norm_eps") or 1e-6), qk_norm=True,
                qkv_bias=bias, attn_output_bias=bias)


def _starcoder2(config: HFConfig, max_seq_len: int) -> Dict[str, Any]:
    bias = bool(config.get("use_bias", True))
    return dict(_common(config, max_seq_len, default_sliding=True), norm_eps=float(config.get("norm_epsilon") or 1e-5),
                norm=partial(nn.LayerNorm, bias=True), qkv_bias=bias, attn_output_bias=bias, mlp_bias=bias,
                gated_mlp=False)


def _phi3(config: HFConfig, max_seq_len: int) -> Dict[str, Any]:
    return dict(_common(config, max_seq_len, default_sliding=True), norm_eps=float(config.get("rms_norm_eps") or 1e-5))


def _qkv_sizes(config: HFConfig) -> List[int]:
    head_dim = head_dim_of(config)
    heads = int(config.need("num_attention_heads"))
    kv = int(config.get("num_key_value_heads") or heads)
    return [heads * head_dim, kv * head_dim, kv * head_dim]


def _phi3_rules(config: HFConfig) -> List[Rule]:
    rules = [r for r in _llama_rules(config, mlp=(None, "down_proj", None))
             if not r.tune.startswith("layers.{i}.attn.") or r.tune.endswith("output_proj")]
    qkv_split, qkv_join = split_rows(_qkv_sizes)
    gate_split, gate_join = split_rows(lambda c: [int(c["intermediate_size"])] * 2)
    return rules + [
        Fused(("layers.{i}.attn.q_proj", "layers.{i}.attn.k_proj", "layers.{i}.attn.v_proj"),
              "model.layers.{i}.self_attn.qkv_proj", qkv_split, qkv_join),
        Fused(("layers.{i}.mlp.w1", "layers.{i}.mlp.w3"), "model.layers.{i}.mlp.gate_up_proj", gate_split, gate_join),
    ]


def _gemma(config: HFConfig, max_seq_len: int) -> Dict[str, Any]:
    dims = _common(config, max_seq_len)
    return dict(dims, norm=GemmaRMSNorm, norm_eps=float(config.get("rms_norm_eps") or 1e-6),
                embed_scale=math.sqrt(dims["embed_dim"]), tie_word_embeddings=bool(config.get("tie_word_embeddings", True)))


def _gemma2(config: HFConfig, max_seq_len: int) -> Dict[str, Any]:
    scalar = config.get("query_pre_attn_scalar")
    return dict(_gemma(config, max_seq_len), post_norms=True,
                attn_scale=None if scalar is None else float(scalar) ** -0.5,
                attn_softcapping=config.get("attn_logit_softcapping"),
                output_softcapping=config.get("final_logit_softcapping"))


def _gemma3(config: HFConfig, max_seq_len: int) -> Dict[str, Any]:
    return dict(_gemma2(config, max_seq_len), qk_norm=True)


def _gemma2_rules(config: HFConfig, qk_norm: bool = False) -> List[Rule]:
    # Gemma 2's four layer norms: post_attention_layernorm normalises the attention output.
    layer = "model.layers.{i}"
    rules = [r for r in _llama_rules(config, qk_norm=qk_norm) if "_norm" not in r.tune or "attn." in r.tune
             or r.tune == "norm"]
    return rules + [
        Rename("layers.{i}.sa_norm", f"{layer}.input_layernorm", _RMS),
        Rename("layers.{i}.sa_scale", f"{layer}.post_attention_layernorm", _RMS),
        Rename("layers.{i}.mlp_norm", f"{layer}.pre_feedforward_layernorm", _RMS),
        Rename("layers.{i}.mlp_scale", f"{layer}.post_feedforward_layernorm", _RMS),
    ]


# ---- architectures on the block library's decoder (parallel residuals, absolute positions, ALiBi)

def _mlp(activation: Callable[[], nn.Module], bias: bool = True) -> Callable[..., nn.Module]:
    """A non-gated MLP component of ``decoder`` with the checkpoint's activation."""
    return lambda linear, dim, hidden_dim: build_mlp(linear, dim=dim, hidden_dim=hidden_dim, gated=False,
                                                     bias=bias, activation=activation())


def _layernorm(eps: float) -> Dict[str, Any]:
    return dict(norm="layernorm", norm_eps=eps)


def _gpt_neox(config: HFConfig, max_seq_len: int) -> Dict[str, Any]:
    bias = bool(config.get("attention_bias", True))
    dims = dict(_dims(config, max_seq_len), num_kv_heads=int(config.need("num_attention_heads")))  # always MHA
    return dict(
        dims, **_layernorm(float(config.get("layer_norm_eps") or 1e-5)),
        positional=_rope(config, dims, partial_rotary_factor=config.get("rotary_pct")), qkv_bias=bias,
        attn_output_bias=bias, ffn=_mlp(activation_of(config)),
        parallel_residual=bool(config.get("use_parallel_residual", True)),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
    )


def _gpt_neox_rules(config: HFConfig) -> List[Rule]:
    layer = "gpt_neox.layers.{i}"
    split, join = split_per_head(lambda c: int(c["num_attention_heads"]))
    return [
        Rename("tok_embeddings", "gpt_neox.embed_in"),
        Fused(("layers.{i}.attn.q_proj", "layers.{i}.attn.k_proj", "layers.{i}.attn.v_proj"),
              f"{layer}.attention.query_key_value", split, join),
        Rename("layers.{i}.attn.output_proj", f"{layer}.attention.dense"),
        Rename("layers.{i}.sa_norm", f"{layer}.input_layernorm"),
        Rename("layers.{i}.mlp_norm", f"{layer}.post_attention_layernorm"),
        Rename("layers.{i}.mlp.w1", f"{layer}.mlp.dense_h_to_4h"),
        Rename("layers.{i}.mlp.w2", f"{layer}.mlp.dense_4h_to_h"),
        Rename("norm", "gpt_neox.final_layer_norm"),
        Rename("output", "embed_out"),
        Ignore(r"gpt_neox\.layers\.\d+\.attention\.(bias|masked_bias|rotary_emb\.inv_freq)"),
    ]


def _gpt2(config: HFConfig, max_seq_len: int) -> Dict[str, Any]:
    if config.get("scale_attn_by_inverse_layer_idx"):
        raise config.unsupported("scale_attn_by_inverse_layer_idx", "attention scores scaled per layer")
    if not config.get("scale_attn_weights", True):
        raise config.unsupported("scale_attn_weights", "unscaled attention scores")
    dim, positions = int(config.need("n_embd")), int(config.need("n_positions"))
    if max_seq_len > positions:
        raise config.unsupported("n_positions", f"learned positions stop there; max_seq_len is {max_seq_len}")
    return dict(
        vocab_size=int(config.need("vocab_size")), num_layers=int(config.need("n_layer")),
        num_heads=int(config.need("n_head")), embed_dim=dim, intermediate_dim=int(config.get("n_inner") or 4 * dim),
        max_seq_len=max_seq_len, **_layernorm(float(config.get("layer_norm_epsilon") or 1e-5)),
        positional="learned", qkv_bias=True, attn_output_bias=True,
        ffn=_mlp(activation_of(config, "activation_function")),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", True)),
    )


def _gpt2_rules(config: HFConfig) -> List[Rule]:
    layer = "transformer.h.{i}"
    split, join = split_rows(lambda c: [int(c["n_embd"])] * 3)
    return [
        Rename("tok_embeddings", "transformer.wte"),
        Rename("post_embedding.pos_embedding.embedding", "transformer.wpe"),
        Fused(("layers.{i}.attn.q_proj", "layers.{i}.attn.k_proj", "layers.{i}.attn.v_proj"),
              f"{layer}.attn.c_attn", split, join, transpose=True),
        Rename("layers.{i}.attn.output_proj", f"{layer}.attn.c_proj", transpose=True),
        Rename("layers.{i}.sa_norm", f"{layer}.ln_1"),
        Rename("layers.{i}.mlp_norm", f"{layer}.ln_2"),
        Rename("layers.{i}.mlp.w1", f"{layer}.mlp.c_fc", transpose=True),
        Rename("layers.{i}.mlp.w2", f"{layer}.mlp.c_proj", transpose=True),
        Rename("norm", "transformer.ln_f"),
        Rename("output", "lm_head"),
        Ignore(r"transformer\.h\.\d+\.attn\.(bias|masked_bias)"),
    ]


def _bloom(config: HFConfig, max_seq_len: int) -> Dict[str, Any]:
    if config.get("apply_residual_connection_post_layernorm"):
        raise config.unsupported("apply_residual_connection_post_layernorm", "the residual taken after the norm")
    dim = int(config.first("hidden_size", "n_embed"))
    return dict(
        vocab_size=int(config.need("vocab_size")), num_layers=int(config.first("n_layer", "num_hidden_layers")),
        num_heads=int(config.first("n_head", "num_attention_heads")), embed_dim=dim, intermediate_dim=4 * dim,
        max_seq_len=max_seq_len, **_layernorm(float(config.get("layer_norm_epsilon") or 1e-5)),
        positional="alibi", post_embedding_norm=True, qkv_bias=True, attn_output_bias=True,
        ffn=_mlp(partial(nn.GELU, approximate="tanh")),  # BLOOM's gelu is the tanh approximation
        tie_word_embeddings=bool(config.get("tie_word_embeddings", True)),
    )


def _bloom_rules(config: HFConfig) -> List[Rule]:
    layer = "transformer.h.{i}"
    split, join = split_per_head(lambda c: int(c.get("n_head") or c["num_attention_heads"]))
    return [
        Rename("tok_embeddings", "transformer.word_embeddings"),
        Rename("post_embedding.norm", "transformer.word_embeddings_layernorm"),
        Fused(("layers.{i}.attn.q_proj", "layers.{i}.attn.k_proj", "layers.{i}.attn.v_proj"),
              f"{layer}.self_attention.query_key_value", split, join),
        Rename("layers.{i}.attn.output_proj", f"{layer}.self_attention.dense"),
        Rename("layers.{i}.sa_norm", f"{layer}.input_layernorm"),
        Rename("layers.{i}.mlp_norm", f"{layer}.post_attention_layernorm"),
        Rename("layers.{i}.mlp.w1", f"{layer}.mlp.dense_h_to_4h"),
        Rename("layers.{i}.mlp.w2", f"{layer}.mlp.dense_4h_to_h"),
        Rename("norm", "transformer.ln_f"),
        Rename("output", "lm_head"),
    ]


def _stablelm(config: HFConfig, max_seq_len: int) -> Dict[str, Any]:
    if config.get("qk_layernorm"):
        raise config.unsupported("qk_layernorm", "StableLM's q/k LayerNorms have weights per head")
    dims = _dims(config, max_seq_len)
    activation = activation_of(config)
    return dict(
        dims, **_layernorm(float(config.get("layer_norm_eps") or 1e-5)), positional=_rope(config, dims),
        qkv_bias=bool(config.get("use_qkv_bias", False)),
        ffn="swiglu" if activation is nn.SiLU else
        (lambda linear, dim, hidden: build_mlp(linear, dim=dim, hidden_dim=hidden, activation=activation())),
        parallel_residual=bool(config.get("use_parallel_residual", False)),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
    )


def _share_norm(model: nn.Module) -> None:
    # A parallel block whose attention and MLP read the same normed input (StableLM, Phi-2, Falcon
    # 7B): one LayerNorm module serves both branches, so it stays one tensor through training.
    for layer in model.layers:
        layer.mlp_norm = layer.sa_norm


def _one_norm_for_both_branches(model: nn.Module, config: HFConfig, linear: Callable[..., nn.Module]) -> None:
    if config.get("use_parallel_residual"):
        _share_norm(model)


def _duplicate(t, c):
    return [t, t]


def _first(parts, c):
    return parts[0]


def _stablelm_rules(config: HFConfig) -> List[Rule]:
    rules = _llama_rules(config, norm_params={})
    if not config.get("use_parallel_residual"):
        return rules
    shared = Fused(("layers.{i}.sa_norm", "layers.{i}.mlp_norm"), "model.layers.{i}.input_layernorm", _duplicate,
                   _first)
    return [r for r in rules if r.tune not in ("layers.{i}.sa_norm", "layers.{i}.mlp_norm")] + [shared]


class FlatHeadsNorm(nn.Module):
    """A norm over all heads of a projection at once (OLMo 2's q/k norms), for ``MultiHeadAttention``'s
    per-head ``q_norm`` / ``k_norm`` slot: ``[b, s, n_h, h_d]`` is normalised over ``n_h * h_d``.

    Args:
        norm (nn.Module): the norm over the last dimension, of size ``n_h * h_d``.
    """

    def __init__(self, norm: nn.Module) -> None:
        super().__init__()
        self.norm = norm

    def forward(self, x):
        """``[b, s, n_h, h_d]`` -> the same shape, normalised over its last two dims together."""
        return self.norm(x.flatten(-2)).view_as(x)


def _olmo2(config: HFConfig, max_seq_len: int) -> Dict[str, Any]:
    bias = bool(config.get("attention_bias", False))
    return dict(_common(config, max_seq_len), norm_eps=float(config.get("rms_norm_eps") or 1e-6), post_norms=True,
                qkv_bias=bias, attn_output_bias=bias)


def _olmo2_layout(model: nn.Module, config: HFConfig, linear: Callable[..., nn.Module]) -> None:
    # OLMo 2 normalises each branch's output only (no norm before attention or the MLP), and its q/k
    # norms span the whole projection rather than one head.
    eps = float(config.get("rms_norm_eps") or 1e-6)
    for layer in model.layers:
        layer.sa_norm, layer.mlp_norm = nn.Identity(), nn.Identity()
        attn = layer.attn
        attn.q_norm = FlatHeadsNorm(RMSNorm(attn.num_heads * attn.head_dim, eps=eps))
        attn.k_norm = FlatHeadsNorm(RMSNorm(attn.num_kv_heads * attn.head_dim, eps=eps))


def _olmo2_rules(config: HFConfig) -> List[Rule]:
    layer = "model.layers.{i}"
    keep = [r for r in _llama_rules(config) if "norm" not in r.tune or r.tune == "norm"]
    return keep + [
        Rename("layers.{i}.attn.q_norm.norm", f"{layer}.self_attn.q_norm", _RMS),
        Rename("layers.{i}.attn.k_norm.norm", f"{layer}.self_attn.k_norm", _RMS),
        Rename("layers.{i}.sa_scale", f"{layer}.post_attention_layernorm", _RMS),
        Rename("layers.{i}.mlp_scale", f"{layer}.post_feedforward_layernorm", _RMS),
    ]


class ScaleBy(nn.Module):
    """Multiply by a constant (Granite's residual multiplier on each branch)."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x):
        """Any shape -> the same shape, times ``factor``."""
        return x * self.factor


class ScaledRMSNorm(RMSNorm):
    """RMSNorm whose output is multiplied by a constant: Granite's ``1 / logits_scaling`` folded into
    the final norm, so the output projection (tied or adapted) and its parameter names stay plain."""

    def __init__(self, dim: int, eps: float, factor: float) -> None:
        super().__init__(dim, eps=eps)
        self.factor = factor

    def forward(self, x):
        """``[..., dim]`` -> the same shape."""
        return super().forward(x) * self.factor


def _granite(config: HFConfig, max_seq_len: int) -> Dict[str, Any]:
    multiplier = config.get("attention_multiplier")
    return dict(_llama(config, max_seq_len), embed_scale=float(config.get("embedding_multiplier") or 1.0),
                attn_scale=None if multiplier is None else float(multiplier))


def _granite_multipliers(model: nn.Module, config: HFConfig, linear: Callable[..., nn.Module]) -> None:
    residual = float(config.get("residual_multiplier") or 1.0)
    for layer in model.layers:
        layer.sa_scale, layer.mlp_scale = ScaleBy(residual), ScaleBy(residual)
    model.norm = ScaledRMSNorm(model.norm.normalized_shape[0], model.norm.eps,
                               1.0 / float(config.get("logits_scaling") or 1.0))


def _phi(config: HFConfig, max_seq_len: int) -> Dict[str, Any]:
    if config.get("qk_layernorm"):
        raise config.unsupported("qk_layernorm", "Phi's q/k LayerNorms are not a block of ours")
    dims = _dims(config, max_seq_len)
    return dict(
        dims, **_layernorm(float(config.get("layer_norm_eps") or 1e-5)), positional=_rope(config, dims),
        qkv_bias=True, attn_output_bias=True, ffn=_mlp(activation_of(config)), parallel_residual=True,
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
    )


def _phi_layout(model: nn.Module, config: HFConfig, linear: Callable[..., nn.Module]) -> None:
    _share_norm(model)
    if config.get("tie_word_embeddings"):
        raise config.unsupported("tie_word_embeddings", "Phi's output projection has a bias")
    model.output = linear("output", int(config["hidden_size"]), int(config["vocab_size"]), True)


def _phi_rules(config: HFConfig) -> List[Rule]:
    layer = "model.layers.{i}"
    return [
        Rename("tok_embeddings", "model.embed_tokens"),
        Rename("layers.{i}.attn.q_proj", f"{layer}.self_attn.q_proj"),
        Rename("layers.{i}.attn.k_proj", f"{layer}.self_attn.k_proj"),
        Rename("layers.{i}.attn.v_proj", f"{layer}.self_attn.v_proj"),
        Rename("layers.{i}.attn.output_proj", f"{layer}.self_attn.dense"),
        Fused(("layers.{i}.sa_norm", "layers.{i}.mlp_norm"), f"{layer}.input_layernorm", _duplicate, _first),
        Rename("layers.{i}.mlp.w1", f"{layer}.mlp.fc1"),
        Rename("layers.{i}.mlp.w2", f"{layer}.mlp.fc2"),
        Rename("norm", "model.final_layernorm"),
        Rename("output", "lm_head"),
    ]


def _falcon_norms(config: HFConfig) -> str:
    """``sequential`` (pre-norm blocks), ``shared`` (parallel, one norm) or ``two`` (parallel, two norms)."""
    if not config.get("parallel_attn", True):
        return "sequential"
    two = config.get("num_ln_in_parallel_attn") or (2 if config.get("new_decoder_architecture") else 1)
    return "two" if two == 2 else "shared"


def _falcon_kv_heads(config: HFConfig) -> int:
    heads = int(config.need("num_attention_heads"))
    if config.get("new_decoder_architecture"):
        return int(config.get("num_kv_heads") or heads)
    return 1 if config.get("multi_query", True) else heads


def _falcon(config: HFConfig, max_seq_len: int) -> Dict[str, Any]:
    if config.get("alibi"):
        raise config.unsupported("alibi", "Falcon's ALiBi variant (Falcon-RW) is not covered")
    heads, dim = int(config.need("num_attention_heads")), int(config.need("hidden_size"))
    head_dim = dim // heads
    bias = bool(config.get("bias", False))
    activation = {"gelu": nn.GELU, "gelu_new": partial(nn.GELU, approximate="tanh")}.get(config.get("activation")
                                                                                        or "gelu")
    if activation is None:
        raise config.unsupported("activation", "supported: gelu, gelu_new")
    return dict(
        vocab_size=int(config.need("vocab_size")), num_layers=int(config.need("num_hidden_layers")), num_heads=heads,
        num_kv_heads=_falcon_kv_heads(config), embed_dim=dim,
        intermediate_dim=int(config.get("ffn_hidden_size") or 4 * dim), max_seq_len=max_seq_len,
        **_layernorm(float(config.get("layer_norm_epsilon") or 1e-5)),
        positional=HFRotaryEmbeddings(head_dim, rope_spec(config, head_dim), max_seq_len=max_seq_len),
        qkv_bias=bias, attn_output_bias=bias, ffn=_mlp(activation, bias=bias),
        parallel_residual=_falcon_norms(config) != "sequential",
        tie_word_embeddings=bool(config.get("tie_word_embeddings", True)),
    )


def _falcon_layout(model: nn.Module, config: HFConfig, linear: Callable[..., nn.Module]) -> None:
    if _falcon_norms(config) == "shared":
        _share_norm(model)


def _falcon_qkv(config: HFConfig):
    """Split and join of Falcon's fused ``query_key_value`` in its three layouts."""
    heads = int(config["num_attention_heads"])
    head_dim = int(config["hidden_size"]) // heads
    if not config.get("new_decoder_architecture"):
        if config.get("multi_query", True):
            return split_rows(lambda c: [heads * head_dim, head_dim, head_dim])  # [q heads; k; v]
        return split_per_head(lambda c: heads)
    kv = _falcon_kv_heads(config)
    group = heads // kv  # per kv group: its q heads, then k, then v

    def split(t, c):
        grouped = t.reshape(kv, group + 2, head_dim, *t.shape[1:])
        return [grouped[:, :group].reshape(-1, *t.shape[1:]), grouped[:, group].reshape(-1, *t.shape[1:]),
                grouped[:, group + 1].reshape(-1, *t.shape[1:])]

    def join(parts, c):
        q, k, v = (p.reshape(kv, -1, head_dim, *p.shape[1:]) for p in parts)
        return torch.cat([q, k, v], dim=1).reshape(-1, *parts[0].shape[1:])

    return split, join


def _falcon_rules(config: HFConfig) -> List[Rule]:
    layer = "transformer.h.{i}"
    split, join = _falcon_qkv(config)
    norms = {
        "sequential": [Rename("layers.{i}.sa_norm", f"{layer}.input_layernorm"),
                       Rename("layers.{i}.mlp_norm", f"{layer}.post_attention_layernorm")],
        "two": [Rename("layers.{i}.sa_norm", f"{layer}.ln_attn"), Rename("layers.{i}.mlp_norm", f"{layer}.ln_mlp")],
        "shared": [Fused(("layers.{i}.sa_norm", "layers.{i}.mlp_norm"), f"{layer}.input_layernorm", _duplicate,
                         _first)],
    }[_falcon_norms(config)]
    return norms + [
        Rename("tok_embeddings", "transformer.word_embeddings"),
        Fused(("layers.{i}.attn.q_proj", "layers.{i}.attn.k_proj", "layers.{i}.attn.v_proj"),
              f"{layer}.self_attention.query_key_value", split, join),
        Rename("layers.{i}.attn.output_proj", f"{layer}.self_attention.dense"),
        Rename("layers.{i}.mlp.w1", f"{layer}.mlp.dense_h_to_4h"),
        Rename("layers.{i}.mlp.w2", f"{layer}.mlp.dense_4h_to_h"),
        Rename("norm", "transformer.ln_f"),
        Rename("output", "lm_head"),
    ]


def _mpt(config: HFConfig, max_seq_len: int) -> Dict[str, Any]:
    attn = dict(config.get("attn_config") or {})
    for key, expected in (("alibi", True), ("clip_qkv", None), ("qk_ln", False), ("softmax_scale", None),
                          ("alibi_bias_max", 8), ("prefix_lm", False), ("attn_uses_sequence_id", False)):
        if attn.get(key, expected) != expected:
            raise UnsupportedConfigError(f"{config.source}: attn_config.{key}={attn.get(key)!r} is not supported: "
                                         f"expected {expected!r}")
    if config.get("logit_scale") is not None:
        raise config.unsupported("logit_scale", "scaled logits")
    heads, dim = int(config.need("n_heads")), int(config.need("d_model"))
    if heads & (heads - 1):
        raise config.unsupported("n_heads", "MPT's ALiBi slopes for a head count that is not a power of 2")
    bias = not config.get("no_bias", True)
    return dict(
        vocab_size=int(config.need("vocab_size")), num_layers=int(config.need("n_layers")), num_heads=heads,
        embed_dim=dim, intermediate_dim=int(config.get("expansion_ratio") or 4) * dim, max_seq_len=max_seq_len,
        norm="layernorm" if bias else "layernorm_no_bias", norm_eps=float(config.get("layer_norm_epsilon") or 1e-5),
        positional="alibi", qkv_bias=bias, attn_output_bias=bias, ffn=_mlp(nn.GELU, bias=bias),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", True)),
    )


def _mpt_rules(config: HFConfig) -> List[Rule]:
    layer = "transformer.blocks.{i}"
    split, join = split_rows(lambda c: [int(c["d_model"])] * 3)
    return [
        Rename("tok_embeddings", "transformer.wte"),
        Fused(("layers.{i}.attn.q_proj", "layers.{i}.attn.k_proj", "layers.{i}.attn.v_proj"),
              f"{layer}.attn.Wqkv", split, join),
        Rename("layers.{i}.attn.output_proj", f"{layer}.attn.out_proj"),
        Rename("layers.{i}.sa_norm", f"{layer}.norm_1"),
        Rename("layers.{i}.mlp_norm", f"{layer}.norm_2"),
        Rename("layers.{i}.mlp.w1", f"{layer}.ffn.up_proj"),
        Rename("layers.{i}.mlp.w2", f"{layer}.ffn.down_proj"),
        Rename("norm", "transformer.norm_f"),
        Rename("output", "lm_head"),
    ]


ARCHITECTURES: Dict[str, Architecture] = {
    "llama": Architecture(_llama, _llama_rules, "Llama 1-3.x, SmolLM, TinyLlama, Vicuna (RMSNorm, SwiGLU, RoPE)"),
    "mistral": Architecture(_mistral, _llama_rules, "Mistral (Llama layout with a sliding window)"),
    "qwen2": Architecture(_qwen2, _llama_rules, "Qwen2, Qwen2.5 (q/k/v biases)"),
    "qwen3": Architecture(_qwen3, partial(_llama_rules, qk_norm=True), "Qwen3 (per-head q/k RMSNorm)"),
    "starcoder2": Architecture(_starcoder2, partial(_llama_rules, mlp=("c_fc", "c_proj", None), norm_params={}),
                               "StarCoder2 (LayerNorm with bias, GELU MLP, biases, sliding window)"),
    "phi3": Architecture(_phi3, _phi3_rules, "Phi-3, Phi-3.5, Phi-4 (fused qkv and gate/up, LongRoPE)"),
    "gemma": Architecture(_gemma, _llama_rules, "Gemma ((1 + w) RMSNorm, GeGLU, sqrt(d)-scaled tied embeddings)"),
    "gemma2": Architecture(_gemma2, _gemma2_rules,
                           "Gemma 2 (post-norms, attention and final soft-capping, local/global layers)"),
    "gemma3_text": Architecture(_gemma3, partial(_gemma2_rules, qk_norm=True),
                                "Gemma 3 text (Gemma 2 blocks + q/k norms, RoPE bases per layer type)"),
    "gpt_neox": Architecture(_gpt_neox, _gpt_neox_rules, "GPT-NeoX, Pythia (parallel residual, partial rotary, "
                             "fused per-head qkv)", assembly=decoder),
    "gpt2": Architecture(_gpt2, _gpt2_rules, "GPT-2, DistilGPT2 (learned positions, Conv1D weights, fused c_attn)",
                         assembly=decoder, base_prefix="transformer."),
    "granite": Architecture(_granite, _llama_rules, "Granite 3.x dense (embedding, attention, residual and "
                            "logit multipliers)", post_build=_granite_multipliers),
    "olmo2": Architecture(_olmo2, _olmo2_rules, "OLMo 2 (norms after each branch only, q/k RMSNorm over the "
                          "whole projection)", post_build=_olmo2_layout),
    "stablelm": Architecture(_stablelm, _stablelm_rules,
                             "StableLM 2, StableLM-3B-4E1T (LayerNorm, partial rotary, optional parallel residual)",
                             assembly=decoder, post_build=_one_norm_for_both_branches),
    "phi": Architecture(_phi, _phi_rules, "Phi-1, Phi-1.5, Phi-2 (parallel block with one LayerNorm, partial "
                        "rotary, output bias)", assembly=decoder, post_build=_phi_layout),
    "falcon": Architecture(_falcon, _falcon_rules, "Falcon 7B/40B/180B, Falcon 2/3 dense (multi-query or grouped "
                           "fused qkv, parallel blocks)", assembly=decoder, base_prefix="transformer.",
                           post_build=_falcon_layout),
    "mpt": Architecture(_mpt, _mpt_rules, "MPT (ALiBi, bias-free LayerNorm and projections, fused Wqkv)",
                        assembly=decoder, base_prefix="transformer."),
    "bloom": Architecture(_bloom, _bloom_rules, "BLOOM, BLOOMZ (ALiBi, embedding LayerNorm, fused per-head qkv)",
                          assembly=decoder, base_prefix="transformer."),
}

# Not decoders we can express, with the reason given to the user.
REFUSED: Dict[str, str] = {
    "mixtral": "mixture-of-experts MLPs are not a block of ours yet",
    "t5": "an encoder-decoder; hf_decoder builds decoder-only models",
    "bart": "an encoder-decoder; hf_decoder builds decoder-only models",
    "mamba": "a state-space model without attention",
    "mamba2": "a state-space model without attention",
    "bert": "an encoder (bidirectional, masked LM), not a causal decoder",
}


def architecture_of(config: HFConfig) -> Architecture:
    """The architecture of a config, from its ``model_type``.

    Raises:
        UnsupportedConfigError: naming ``model_type`` and its value, with the reason or the supported list.
    """
    kind = config.get("model_type")
    if kind in ARCHITECTURES:
        if config.get("is_encoder_decoder"):
            raise config.unsupported("is_encoder_decoder", "hf_decoder builds decoder-only models")
        return ARCHITECTURES[kind]
    if kind in REFUSED:
        raise config.unsupported("model_type", REFUSED[kind])
    if config.get("is_encoder_decoder"):
        raise config.unsupported("model_type", "an encoder-decoder; hf_decoder builds decoder-only models")
    raise config.unsupported("model_type", f"supported architectures: {', '.join(sorted(ARCHITECTURES))}")


__all__ = ["ARCHITECTURES", "Architecture", "architecture_of", "REFUSED", "UnsupportedConfigError"]
