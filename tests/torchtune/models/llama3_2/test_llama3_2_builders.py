"""Llama 3.2 (text) builders: published sizes with tied embeddings, untied variants, LoRA/QLoRA wiring."""

import pytest
import torch

import torchtune.models.llama3_2._model_builders as builders
from tests.torchtune.models.llama3 import hf_reference as hf
from torchtune.models.llama3_2 import (
    llama3_2,
    llama3_2_1b,
    llama3_2_3b,
    lora_llama3_2,
    lora_llama3_2_1b,
    lora_llama3_2_3b,
    qlora_llama3_2_1b,
    qlora_llama3_2_3b,
)

# Published parameter counts, tied embeddings (Hugging Face model cards / safetensors metadata
# of meta-llama/Llama-3.2-1B and -3B).
SIZES = {"1b": 1_235_814_400, "3b": 3_212_749_824}
BASE = {"1b": llama3_2_1b, "3b": llama3_2_3b}
LORA = {"1b": lora_llama3_2_1b, "3b": lora_llama3_2_3b}
QLORA = {"1b": (qlora_llama3_2_1b, builders._1B), "3b": (qlora_llama3_2_3b, builders._3B)}
EMBED = {"1b": 128_256 * 2048, "3b": 128_256 * 3072}


@pytest.mark.parametrize("size", SIZES)
def test_published_parameter_counts(size):
    assert abs(hf.base_param_count(BASE[size]) - SIZES[size]) / SIZES[size] < 1e-3
    # Untied: a separate output projection of the embedding's size.
    assert hf.base_param_count(BASE[size], tie_word_embeddings=False) == SIZES[size] + EMBED[size]


@pytest.mark.parametrize("size", SIZES)
def test_lora_builders_wrap_the_published_size(size):
    n = hf.base_param_count(LORA[size], ["q_proj", "v_proj", "output_proj"], apply_lora_to_mlp=True)
    assert abs(n - SIZES[size]) / SIZES[size] < 1e-3


@pytest.mark.parametrize("size", SIZES)
def test_qlora_builders_quantize_the_published_size(monkeypatch, size):
    qlora, dims = QLORA[size]
    calls = hf.record_calls(monkeypatch, builders, "lora_llama3_2")
    qlora(["q_proj"], lora_rank=2, tie_word_embeddings=False)
    (args, kwargs), = calls
    assert args == (["q_proj"], False, False)
    assert kwargs["quantize_base"] is True and kwargs["tie_word_embeddings"] is False and kwargs["lora_rank"] == 2
    assert {k: kwargs[k] for k in dims} == dims


def test_rope_scale_factor_32():
    with torch.device("meta"):
        model = llama3_2_1b()
    assert model.layers[0].attn.pos_embeddings.scale_factor == 32


def test_tied_output_is_the_embedding_table():
    model = llama3_2(**hf.TINY)
    assert "output.weight" not in model.state_dict()
    assert model.output.weight is model.tok_embeddings.weight


def test_lora_on_tied_output_raises():
    with pytest.raises(ValueError, match="apply_lora_to_output"):
        lora_llama3_2(["q_proj"], apply_lora_to_output=True, **hf.TINY, lora_rank=4, lora_alpha=8)
    untied = lora_llama3_2(["q_proj"], apply_lora_to_output=True, **hf.TINY, lora_rank=4, lora_alpha=8,
                           tie_word_embeddings=False)
    assert "output.lora_a.weight" in untied.state_dict()
