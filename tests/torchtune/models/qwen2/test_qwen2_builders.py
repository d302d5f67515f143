"""Qwen2 builders: published parameter counts on the meta device, tied small sizes, LoRA wiring."""

import pytest

from tests.torchtune.models.llama3.hf_reference import base_param_count
from torchtune.models.qwen2 import lora_qwen2_0_5b, lora_qwen2_1_5b, lora_qwen2_7b, qwen2_0_5b, qwen2_1_5b, qwen2_7b

# Published counts: the safetensors metadata ("Model size") of Qwen/Qwen2-0.5B, -1.5B and -7B on
# Hugging Face. Checked by hand against their config.json (vocab 151936 / 152064, tied embeddings
# for 0.5B and 1.5B, so the embedding table is counted once), e.g. 0.5B: 151936 * 896 embedding
# + 24 * (896 * (896 + 2 * 128 + 896) + 896 + 2 * 128 (biases) + 3 * 896 * 4864 + 2 * 896) + 896.
SIZES = {
    "0.5B": (qwen2_0_5b, lora_qwen2_0_5b, 494_032_768),
    "1.5B": (qwen2_1_5b, lora_qwen2_1_5b, 1_543_714_304),
    "7B": (qwen2_7b, lora_qwen2_7b, 7_615_616_512),
}


@pytest.mark.parametrize("size", SIZES)
def test_published_parameter_counts(size):
    base, lora, published = SIZES[size]
    assert abs(base_param_count(base) - published) / published < 1e-3
    assert abs(base_param_count(lora, ["q_proj", "v_proj"], apply_lora_to_mlp=True) - published) / published < 1e-3


def test_0_5b_by_hand():
    layer = 896 * (896 + 2 * 128 + 896) + (896 + 2 * 128) + 3 * 896 * 4864 + 2 * 896
    assert base_param_count(qwen2_0_5b) == 151_936 * 896 + 24 * layer + 896


@pytest.mark.parametrize("builder", [qwen2_0_5b, qwen2_1_5b])
def test_small_sizes_are_tied(builder):
    import torch

    with torch.device("meta"):
        model = builder()
    assert model.output.weight is model.tok_embeddings.weight
    assert model.layers[0].attn.q_proj.bias is not None


def test_7b_output_can_take_lora():
    import torch

    with torch.device("meta"):
        model = lora_qwen2_7b(["q_proj"], apply_lora_to_output=True, lora_rank=2)
    assert hasattr(model.output, "lora_a")
