"""Llama 3.3 70B is Llama 3.1 70B's architecture: same modules, sizes and RoPE, and the same
checkpoint conversion (model type LLAMA3)."""

import pytest
import torch

import torchtune.models.llama3_1._model_builders as llama3_1_builders
from tests.torchtune.models.llama3 import hf_reference as hf
from torchtune.models.llama3_1 import llama3_1, llama3_1_70b
from torchtune.models.llama3_3 import llama3_3_70b, lora_llama3_3_70b, qlora_llama3_3_70b

# Published parameter count of meta-llama/Llama-3.3-70B-Instruct (model card), as Llama 3.1 70B.
LLAMA3_3_70B = 70_553_706_496


def _shapes(builder, *args, **kwargs):
    with torch.device("meta"):
        model = builder(*args, **kwargs)
    rope = model.layers[0].attn.pos_embeddings
    return {n: p.shape for n, p in model.named_parameters()}, (rope.base, rope.scale_factor, rope.max_seq_len)


def test_same_architecture_as_llama3_1_70b():
    assert _shapes(llama3_3_70b) == _shapes(llama3_1_70b)
    assert abs(hf.base_param_count(llama3_3_70b) - LLAMA3_3_70B) / LLAMA3_3_70B < 1e-3


def test_lora_builder_wraps_the_published_size():
    n = hf.base_param_count(lora_llama3_3_70b, ["q_proj", "v_proj"], apply_lora_to_mlp=True, use_dora=True)
    assert abs(n - LLAMA3_3_70B) / LLAMA3_3_70B < 1e-3


def test_qlora_builder_quantizes_llama3_1_70b(monkeypatch):
    calls = hf.record_calls(monkeypatch, llama3_1_builders, "lora_llama3_1")
    qlora_llama3_3_70b(["q_proj", "v_proj"], lora_dropout=0.1)
    (args, kwargs), = calls
    assert args == (["q_proj", "v_proj"], False, False)
    assert kwargs["quantize_base"] is True and kwargs["lora_dropout"] == 0.1
    assert {k: kwargs[k] for k in llama3_1_builders._70B} == llama3_1_builders._70B


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    # Llama 3.3's config.json has Llama 3.1's RoPE scaling; the original context is shrunk so
    # that it matters at the test length.
    folder = tmp_path_factory.mktemp("llama3_3") / "hf"
    return hf.save_reference(folder, rope_scaling=hf.LLAMA3_SCALING, tie=False, seed=3), folder


def test_logits_match_transformers_and_round_trip(reference, tmp_path):
    ref, folder = reference
    ours = hf.load_ours(folder, llama3_1, "LLAMA3", tmp_path)
    assert hf.max_logit_error(ours, ref, hf.tokens()) < 1e-5
    back = hf.saved_output_loads_strictly(ours, folder, "LLAMA3", tmp_path / "out")
    assert hf.max_logit_error(back, ref, hf.tokens()) < 1e-5
    assert hf.kv_cache_error(ours, hf.tokens()) < 1e-5
