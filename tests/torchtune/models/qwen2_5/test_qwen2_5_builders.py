"""Qwen2.5 builders: every size on the meta device against its published parameter count."""

import pytest
import torch

import torchtune.models.qwen2_5 as qwen2_5
from tests.torchtune.models.llama3.hf_reference import base_param_count

# Published counts: safetensors metadata ("Model size") of Qwen/Qwen2.5-{0.5B,1.5B,3B,7B,14B,32B,72B}
# on Hugging Face. 0.5B, 1.5B and 3B tie their embeddings (config.json tie_word_embeddings: true),
# so their table is counted once; the others have vocabulary 152064 and a separate lm_head.
# Base and instruct models of one size have the same shapes.
PUBLISHED = {
    "0_5b": 494_032_768,
    "1_5b": 1_543_714_304,
    "3b": 3_085_938_688,
    "7b": 7_615_616_512,
    "14b": 14_770_033_664,
    "32b": 32_763_876_352,
    "72b": 72_706_203_648,
}
BUILDERS = [name for name in qwen2_5.__all__ if name.startswith(("qwen2_5_", "lora_qwen2_5_")) and "okenizer" not in name]


def _size(name):
    return name.replace("lora_", "").replace("qwen2_5_", "").replace("_base", "").replace("_instruct", "")


def test_every_upstream_size_is_built():
    assert {_size(n) for n in BUILDERS} == set(PUBLISHED)
    assert len(BUILDERS) == 24  # 12 sizes/variants, each with its LoRA twin


@pytest.mark.parametrize("name", BUILDERS)
def test_published_parameter_counts(name):
    builder = getattr(qwen2_5, name)
    args = (["q_proj", "v_proj"],) if name.startswith("lora_") else ()
    published = PUBLISHED[_size(name)]
    assert abs(base_param_count(builder, *args) - published) / published < 1e-3


def test_base_and_instruct_differ_only_in_context():
    with torch.device("meta"):
        base, instruct = qwen2_5.qwen2_5_7b_base(), qwen2_5.qwen2_5_7b_instruct()
    assert (base.max_seq_len, instruct.max_seq_len) == (131_072, 32_768)


def test_tied_sizes_refuse_lora_on_output():
    with pytest.raises(ValueError, match="apply_lora_to_output"):
        qwen2_5.lora_qwen2_5_3b(["q_proj"], apply_lora_to_output=True)
