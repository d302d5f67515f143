"""Llama 3.1 builders: published sizes and LoRA/QLoRA wiring."""

import pytest

import torchtune.models.llama3_1._model_builders as builders
from tests.torchtune.models.llama3 import hf_reference as hf
from torchtune.models.llama3_1 import (
    Llama3ScaledRoPE,
    llama3_1_405b,
    llama3_1_70b,
    llama3_1_8b,
    lora_llama3_1_405b,
    lora_llama3_1_70b,
    lora_llama3_1_8b,
    qlora_llama3_1_405b,
    qlora_llama3_1_70b,
    qlora_llama3_1_8b,
)

# Published parameter counts (Hugging Face model cards / safetensors metadata of
# meta-llama/Llama-3.1-8B, -70B and -405B; 8B and 70B are Llama 3's architecture).
SIZES = {"8b": 8_030_261_248, "70b": 70_553_706_496, "405b": 405_853_388_800}
BASE = {"8b": llama3_1_8b, "70b": llama3_1_70b, "405b": llama3_1_405b}
LORA = {"8b": lora_llama3_1_8b, "70b": lora_llama3_1_70b, "405b": lora_llama3_1_405b}
QLORA = {"8b": (qlora_llama3_1_8b, builders._8B), "70b": (qlora_llama3_1_70b, builders._70B),
         "405b": (qlora_llama3_1_405b, builders._405B)}


@pytest.mark.parametrize("size", SIZES)
def test_published_parameter_counts(size):
    assert abs(hf.base_param_count(BASE[size]) - SIZES[size]) / SIZES[size] < 1e-3


@pytest.mark.parametrize("size", SIZES)
def test_lora_builders_wrap_the_published_size(size):
    n = hf.base_param_count(LORA[size], ["q_proj", "v_proj", "output_proj"], apply_lora_to_mlp=True)
    assert abs(n - SIZES[size]) / SIZES[size] < 1e-3


@pytest.mark.parametrize("size", SIZES)
def test_qlora_builders_quantize_the_published_size(monkeypatch, size):
    qlora, dims = QLORA[size]
    calls = hf.record_calls(monkeypatch, builders, "lora_llama3_1")
    qlora(["v_proj"], apply_lora_to_mlp=True, lora_alpha=4)
    (args, kwargs), = calls
    assert args == (["v_proj"], True, False)
    assert kwargs["quantize_base"] is True and kwargs["lora_alpha"] == 4
    assert {k: kwargs[k] for k in dims} == dims


def test_long_context_rope():
    with __import__("torch").device("meta"):
        model = llama3_1_8b()
    rope = model.layers[0].attn.pos_embeddings
    assert isinstance(rope, Llama3ScaledRoPE) and rope.scale_factor == 8 and rope.max_seq_len == 131_072
    assert all(layer.attn.pos_embeddings is rope for layer in model.layers)
