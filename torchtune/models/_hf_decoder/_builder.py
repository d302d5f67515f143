"""Build our decoder for a Hugging Face checkpoint folder from its ``config.json`` alone."""

from pathlib import Path
from typing import List, Optional, Union

from torchtune.models._hf_decoder._architectures import architecture_of
from torchtune.models._hf_decoder._config import load_hf_config
from torchtune.modules.layer_builders import dense_linear, LinearBuilder
from torchtune.modules.peft import get_lora_linear_builder, LORA_ATTN_MODULES
from torchtune.modules.transformer import TransformerDecoder

# The cache sizes of a 128k-context config are not needed to fine-tune on short samples.
DEFAULT_MAX_SEQ_LEN = 4096


def _decoder(linear: LinearBuilder, path: Union[str, Path], max_seq_len: Optional[int]) -> TransformerDecoder:
    config = load_hf_config(path)
    arch = architecture_of(config)
    if max_seq_len is None:
        longest = config.first("max_position_embeddings", "n_positions", default=DEFAULT_MAX_SEQ_LEN)
        max_seq_len = min(int(longest), DEFAULT_MAX_SEQ_LEN)
    model = arch.assembly(linear=linear, **arch.build_kwargs(config, max_seq_len))
    if arch.post_build is not None:
        arch.post_build(model, config, linear)
    return model


def hf_decoder(path: str, max_seq_len: Optional[int] = None) -> TransformerDecoder:
    """The decoder described by a Hugging Face checkpoint's ``config.json``, randomly initialised.

    Load its weights with ``FullModelHFCheckpointer(model_type="HF_DECODER", ...)``; the supported
    ``model_type`` values and what each maps to are listed in ``docs/hf_models.md``.

    Args:
        path (str): the checkpoint folder (or its ``config.json``).
        max_seq_len (Optional[int]): longest sequence (RoPE and KV-cache sizes). Default:
            ``max_position_embeddings``, at most 4096.

    Returns:
        TransformerDecoder: the model.

    Raises:
        FileNotFoundError: if there is no config.json.
        UnsupportedConfigError: (a ``ValueError``) naming the config key and value the blocks
            cannot express (an encoder-decoder, a state-space model, an unknown RoPE type, ...).
    """
    return _decoder(dense_linear, path, max_seq_len)


def lora_hf_decoder(
    path: str,
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    *,
    lora_rank: int,
    lora_alpha: float,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
    max_seq_len: Optional[int] = None,
) -> TransformerDecoder:
    """:func:`hf_decoder` with LoRA (or DoRA, QLoRA) adapters on the selected linear layers.

    Args:
        path (str): as :func:`hf_decoder`.
        lora_attn_modules (List[LORA_ATTN_MODULES]): LoRA arguments, as
            :func:`torchtune.modules.peft.get_lora_linear_builder`.
        apply_lora_to_mlp (bool): likewise. Default False.
        apply_lora_to_output (bool): likewise. Default False.
        lora_rank (int): likewise.
        lora_alpha (float): likewise.
        lora_dropout (float): likewise. Default 0.0.
        use_dora (bool): likewise. Default False.
        quantize_base (bool): likewise (QLoRA). Default False.
        max_seq_len (Optional[int]): as :func:`hf_decoder`.

    Returns:
        TransformerDecoder: the model; adapters start as a no-op.

    Raises:
        ValueError: as :func:`hf_decoder` and :func:`get_lora_linear_builder`.
    """
    linear = get_lora_linear_builder(
        lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, lora_rank=lora_rank, lora_alpha=lora_alpha,
        lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )
    return _decoder(linear, path, max_seq_len)


def qlora_hf_decoder(
    path: str,
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    *,
    lora_rank: int,
    lora_alpha: float,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    max_seq_len: Optional[int] = None,
) -> TransformerDecoder:
    """:func:`lora_hf_decoder` with NF4-quantized base weights (QLoRA); arguments as there."""
    return lora_hf_decoder(
        path, lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, lora_rank=lora_rank,
        lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=True,
        max_seq_len=max_seq_len,
    )
