"""Linear builders that put LoRA / DoRA adapters (optionally on NF4 base weights) on named layers.

They plug into the shared block builders of :mod:`torchtune.modules.layer_builders`: a family's
LoRA model is its base model assembled with one of these instead of ``dense_linear``.
"""

from typing import Collection, List

from torch import nn

from torchtune.modules.layer_builders import LinearBuilder, dense_linear, frozen_nf4_linear
from torchtune.modules.peft._utils import LORA_ATTN_MODULES, get_lora_module_names
from torchtune.modules.peft.dora import DoRALinear
from torchtune.modules.peft.lora import LoRALinear


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

    # Read by build_decoder, which refuses an adapter on a tied output projection.
    build.adapted_names = lora_modules
    return build


def get_lora_linear_builder(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    *,
    lora_rank: int,
    lora_alpha: float,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> LinearBuilder:
    """The linear builder of a ``lora_<family>`` component builder, from its usual arguments.

    Args:
        lora_attn_modules (List[LORA_ATTN_MODULES]): attention projections to adapt, any of
            ``q_proj``, ``k_proj``, ``v_proj``, ``output_proj``.
        apply_lora_to_mlp (bool): also adapt every MLP's ``w1``, ``w2``, ``w3``. Default False.
        apply_lora_to_output (bool): also adapt the output projection. Default False.
        lora_rank (int): adapter rank.
        lora_alpha (float): adapter alpha (updates are scaled by ``alpha / rank``).
        lora_dropout (float): adapter input dropout. Default 0.0.
        use_dora (bool): DoRA instead of LoRA. Default False.
        quantize_base (bool): NF4 base weights (QLoRA). Default False.

    Returns:
        LinearBuilder: ``(name, in_dim, out_dim, bias) -> nn.Module``.

    Raises:
        ValueError: if ``lora_attn_modules`` has an invalid entry or nothing would be adapted.
    """
    return lora_linear_builder(
        get_lora_module_names(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output),
        lora_rank=lora_rank,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        use_dora=use_dora,
        quantize_base=quantize_base,
    )
