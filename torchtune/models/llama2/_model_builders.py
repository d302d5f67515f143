from functools import partial
from typing import Any, Callable, Dict, List

from torchtune.models.llama2._component_builders import llama2, lora_llama2
from torchtune.modules import TransformerDecoder
from torchtune.modules.peft import LORA_ATTN_MODULES

_7B = dict(vocab_size=32_000, num_layers=32, num_heads=32, num_kv_heads=32, embed_dim=4096,
           max_seq_len=4096, attn_dropout=0.0, norm_eps=1e-5)
_13B = dict(vocab_size=32_000, num_layers=40, num_heads=40, num_kv_heads=40, embed_dim=5120,
            intermediate_dim=13824, max_seq_len=4096, attn_dropout=0.0, norm_eps=1e-5)
_70B = dict(vocab_size=32_000, num_layers=80, num_heads=64, num_kv_heads=8, embed_dim=8192,
            intermediate_dim=28672, max_seq_len=4096, attn_dropout=0.0, norm_eps=1e-5)

_LORA_ARGS_DOC = """
    Args:
        lora_attn_modules (List[LORA_ATTN_MODULES]): attention projections to adapt, any of
            ``q_proj``, ``k_proj``, ``v_proj``, ``output_proj``.
        apply_lora_to_mlp (bool): also adapt every MLP. Default False.
        apply_lora_to_output (bool): also adapt the output projection. Default False.
        lora_rank (int): adapter rank. Default 8.
        lora_alpha (float): adapter alpha. Default 16.
        lora_dropout (float): adapter input dropout. Default 0.0.
        use_dora (bool): DoRA instead of LoRA. Default False.
        quantize_base (bool): NF4 base weights (QLoRA). Default False.

    Returns:
        TransformerDecoder: the model with adapters (see :func:`lora_llama2`).
"""


def llama2_7b() -> TransformerDecoder:
    """Llama2 7B: 32 layers, 32 heads, dim 4096, MLP 11008, vocab 32000, context 4096."""
    return llama2(**_7B)


def llama2_13b() -> TransformerDecoder:
    """Llama2 13B: 40 layers, 40 heads, dim 5120, MLP 13824, vocab 32000, context 4096."""
    return llama2(**_13B)


def llama2_70b() -> TransformerDecoder:
    """Llama2 70B: 80 layers, 64 query / 8 key-value heads, dim 8192, MLP 28672, vocab 32000."""
    return llama2(**_70B)


def _lora_model_builder(dims: Dict[str, Any], size: str) -> Callable[..., TransformerDecoder]:
    """A ``lora_llama2_<size>`` model builder: :func:`lora_llama2` with the dimensions fixed."""

    def builder(
        lora_attn_modules: List[LORA_ATTN_MODULES],
        apply_lora_to_mlp: bool = False,
        apply_lora_to_output: bool = False,
        lora_rank: int = 8,
        lora_alpha: float = 16,
        lora_dropout: float = 0.0,
        use_dora: bool = False,
        quantize_base: bool = False,
    ) -> TransformerDecoder:
        return lora_llama2(
            lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **dims,
            lora_rank=lora_rank, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
            use_dora=use_dora, quantize_base=quantize_base,
        )

    # Named like a module-level function so configs, reprs and pickle find it.
    builder.__name__ = builder.__qualname__ = f"lora_llama2_{size}"
    builder.__doc__ = (
        f"Llama2 {size.upper()} with LoRA adapters (dimensions as :func:`llama2_{size}`).\n"
        + _LORA_ARGS_DOC
    )
    return builder


lora_llama2_7b = _lora_model_builder(_7B, "7b")
lora_llama2_13b = _lora_model_builder(_13B, "13b")
lora_llama2_70b = _lora_model_builder(_70B, "70b")

qlora_llama2_7b = partial(lora_llama2_7b, quantize_base=True)
qlora_llama2_7b.__doc__ = """Llama2 7B with LoRA adapters on NF4 base weights (QLoRA, Dettmers et al., 2023).

Same arguments as :func:`lora_llama2_7b`, with ``quantize_base=True``.
"""

qlora_llama2_13b = partial(lora_llama2_13b, quantize_base=True)
qlora_llama2_13b.__doc__ = """Llama2 13B with LoRA adapters on NF4 base weights (QLoRA).

Same arguments as :func:`lora_llama2_13b`, with ``quantize_base=True``.
"""

qlora_llama2_70b = partial(lora_llama2_70b, quantize_base=True)
qlora_llama2_70b.__doc__ = """Llama2 70B with LoRA adapters on NF4 base weights (QLoRA).

Same arguments as :func:`lora_llama2_70b`, with ``quantize_base=True``.
"""
