"""Llama 3 builders: published sizes, LoRA/QLoRA wiring, the tensor-parallel plan."""

import fnmatch

import pytest
import torch
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel

import torchtune.models.llama3._model_builders as builders
from tests.torchtune.models.llama3 import hf_reference as hf
from torchtune.models.llama3 import (
    base_llama_tp_plan,
    llama3,
    llama3_70b,
    llama3_8b,
    lora_llama3,
    lora_llama3_70b,
    lora_llama3_8b,
    qlora_llama3_70b,
    qlora_llama3_8b,
)
from torchtune.modules.low_precision import is_nf4

# Published parameter counts (Hugging Face model cards / safetensors metadata of
# meta-llama/Meta-Llama-3-8B and -70B).
LLAMA3_8B = 8_030_261_248
LLAMA3_70B = 70_553_706_496


@pytest.mark.parametrize("builder, expected", [(llama3_8b, LLAMA3_8B), (llama3_70b, LLAMA3_70B)], ids=["8b", "70b"])
def test_published_parameter_counts(builder, expected):
    assert abs(hf.base_param_count(builder) - expected) / expected < 1e-3


@pytest.mark.parametrize("builder, expected", [(lora_llama3_8b, LLAMA3_8B), (lora_llama3_70b, LLAMA3_70B)],
                         ids=["8b", "70b"])
def test_lora_builders_wrap_the_published_size(builder, expected):
    assert abs(hf.base_param_count(builder, ["q_proj", "v_proj"], apply_lora_to_mlp=True) - expected) / expected < 1e-3


@pytest.mark.parametrize("qlora, size", [(qlora_llama3_8b, builders._8B), (qlora_llama3_70b, builders._70B)],
                         ids=["8b", "70b"])
def test_qlora_builders_quantize_the_published_size(monkeypatch, qlora, size):
    # Building 8B/70B in NF4 takes minutes on CPU: check what reaches the component builder.
    calls = hf.record_calls(monkeypatch, builders, "lora_llama3")
    qlora(["q_proj", "k_proj"], lora_rank=4, use_dora=True)
    (args, kwargs), = calls
    assert args == (["q_proj", "k_proj"], False, False)
    assert kwargs["quantize_base"] is True and kwargs["use_dora"] is True and kwargs["lora_rank"] == 4
    assert {k: kwargs[k] for k in size} == size


def test_tiny_qlora_quantizes_every_layer_weight():
    model = lora_llama3(["q_proj", "v_proj"], apply_lora_to_mlp=True, **hf.TINY, lora_rank=4, lora_alpha=8,
                        quantize_base=True)
    attn, mlp = model.layers[0].attn, model.layers[0].mlp
    assert all(is_nf4(m.weight) for m in (attn.k_proj, attn.output_proj))  # frozen, not adapted
    assert all(is_nf4(m.weight) for m in (attn.q_proj, mlp.w1, mlp.w2, mlp.w3))  # adapted (QLoRA base)
    assert not is_nf4(model.output.weight)
    assert model(torch.randint(0, 256, (1, 8))).shape == (1, 8, 256)


def test_default_mlp_width_is_llama2_rule():
    model = llama3(vocab_size=64, num_layers=1, num_heads=4, num_kv_heads=2, embed_dim=4096 // 64,
                   max_seq_len=16)
    # two thirds of 4 * 64 = 170, rounded up to a multiple of 256
    assert model.layers[0].mlp.w1.weight.shape == (256, 64)
    assert model.layers[0].attn.pos_embeddings.base == 500000


def test_tp_plan_names_modules_of_the_model():
    model = llama3(**hf.TINY)
    names = {n for n, _ in model.named_modules()}
    plan = base_llama_tp_plan()
    for pattern in plan:
        assert fnmatch.filter(names, pattern), f"{pattern} matches no module"
    linears = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    covered = {n for n in linears if any(fnmatch.fnmatch(n, p) for p in plan)}
    assert covered == linears  # every projection of the model is sharded
    colwise = {p.rsplit(".", 1)[-1] for p, s in plan.items() if isinstance(s, ColwiseParallel)}
    rowwise = {p.rsplit(".", 1)[-1] for p, s in plan.items() if isinstance(s, RowwiseParallel)}
    assert colwise == {"q_proj", "k_proj", "v_proj", "w1", "w3", "output"}
    assert rowwise == {"output_proj", "w2", "tok_embeddings"}
    assert base_llama_tp_plan() is not plan
