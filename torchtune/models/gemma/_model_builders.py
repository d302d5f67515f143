"""Gemma model builders: one plain function per published size, on :func:`gemma`.

Dimensions are those of the ``config.json`` of ``google/gemma-2b`` and ``google/gemma-7b``
(the instruction-tuned ``-it`` checkpoints share them): vocabulary 256000, head size 256,
context 8192, RMSNorm epsilon 1e-6, RoPE base 10000, tied embeddings.
"""

from typing import List, Optional

from torchtune.data._prompt_templates import _TemplateType, _get_prompt_template
from torchtune.models.gemma._component_builders import gemma, lora_gemma
from torchtune.models.gemma._tokenizer import GemmaTokenizer
from torchtune.modules import TransformerDecoder
from torchtune.modules.peft import LORA_ATTN_MODULES

_GEMMA = dict(vocab_size=256_000, head_dim=256, max_seq_len=8192, attn_dropout=0.0, norm_eps=1e-6, rope_base=10_000)
_2B = dict(_GEMMA, num_layers=18, num_heads=8, num_kv_heads=1, embed_dim=2048, intermediate_dim=16_384)
_7B = dict(_GEMMA, num_layers=28, num_heads=16, num_kv_heads=16, embed_dim=3072, intermediate_dim=24_576)


def gemma_tokenizer(
    path: str, max_seq_len: Optional[int] = None, prompt_template: Optional[_TemplateType] = None
) -> GemmaTokenizer:
    """The Gemma SentencePiece tokenizer.

    Args:
        path (str): the ``tokenizer.model`` file.
        max_seq_len (Optional[int]): truncate tokenized messages to this length. Default None.
        prompt_template (Optional[_TemplateType]): a template (class path or role -> (prepend,
            append) dict) applied to messages; ``"torchtune.models.gemma.GemmaChatTemplate"``
            gives Gemma's chat turns. Default None (messages joined as they are).

    Returns:
        GemmaTokenizer: the tokenizer.
    """
    template = _get_prompt_template(prompt_template) if prompt_template is not None else None
    return GemmaTokenizer(path=path, max_seq_len=max_seq_len, prompt_template=template)


def gemma_2b() -> TransformerDecoder:
    """Gemma 2B: 18 layers, 8 query heads sharing 1 key-value head (MQA) of 256, dim 2048, MLP 16384."""
    return gemma(**_2B)


def lora_gemma_2b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """Gemma 2B with LoRA adapters; arguments as :func:`lora_gemma`, dimensions as :func:`gemma_2b`."""
    return lora_gemma(
        lora_attn_modules, apply_lora_to_mlp, **_2B, lora_rank=lora_rank, lora_alpha=lora_alpha,
        lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )


def qlora_gemma_2b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    *,
    quantize_base: bool = True,
) -> TransformerDecoder:
    """Gemma 2B with LoRA adapters on NF4-quantised frozen weights (QLoRA); as :func:`lora_gemma_2b`."""
    return lora_gemma_2b(
        lora_attn_modules, apply_lora_to_mlp, lora_rank=lora_rank, lora_alpha=lora_alpha,
        lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )

def gemma_7b() -> TransformerDecoder:
    """Gemma 7B: 28 layers, 16 heads of 256 (MHA), dim 3072, MLP 24576."""
    return gemma(**_7B)


def lora_gemma_7b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """Gemma 7B with LoRA adapters; arguments as :func:`lora_gemma`, dimensions as :func:`gemma_7b`."""
    return lora_gemma(
        lora_attn_modules, apply_lora_to_mlp, **_7B, lora_rank=lora_rank, lora_alpha=lora_alpha,
        lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )


def qlora_gemma_7b(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    *,
    quantize_base: bool = True,
) -> TransformerDecoder:
    """Gemma 7B with LoRA adapters on NF4-quantised frozen weights (QLoRA); as :func:`lora_gemma_7b`."""
    return lora_gemma_7b(
        lora_attn_modules, apply_lora_to_mlp, lora_rank=lora_rank, lora_alpha=lora_alpha,
        lora_dropout=lora_dropout, use_dora=use_dora, quantize_base=quantize_base,
    )
