"""Qwen3 against `transformers`' Qwen3ForCausalLM (QK-norm, explicit head_dim, no q/k/v biases), and its sizes."""

import pytest
import torch

import torchtune.models.qwen3 as qwen3_pkg
from tests.torchtune.models.llama3.hf_reference import base_param_count
from tests.torchtune.models.qwen2.qwen_reference import TINY, check_family, save_reference
from torchtune.models.qwen3 import lora_qwen3, qwen3

HEAD_DIM = 24  # not embed_dim // num_heads (16), as in real Qwen3 (128 with dim 1024 and 16 heads)
QWEN3 = dict(TINY, head_dim=HEAD_DIM, q_proj_bias=False, k_proj_bias=False, v_proj_bias=False, q_norm=True,
             k_norm=True)


@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
def test_qwen3_matches_transformers(tmp_path, tie):
    ref = save_reference(tmp_path / "hf", "qwen3", tie, head_dim=HEAD_DIM, attention_bias=False)
    assert "model.layers.0.self_attn.q_norm.weight" in ref.state_dict()
    errors = check_family(ref, tmp_path / "hf", "QWEN3", lambda: qwen3(**QWEN3, tie_word_embeddings=tie), tmp_path)
    assert max(errors.values()) <= 1e-5, errors


def test_defaults_are_qwen2_style():
    model = qwen3(**TINY)
    attn = model.layers[0].attn
    assert attn.q_proj.bias is not None and attn.q_norm is None


@pytest.mark.parametrize("flags", [dict(k_proj_bias=False), dict(q_norm=True)])
def test_mixed_flags_are_refused(flags):
    with pytest.raises(ValueError, match="must be equal"):
        qwen3(**TINY, **flags)


def test_lora_qwen3_starts_as_the_base_model():
    torch.manual_seed(0)
    base = qwen3(**QWEN3).eval()
    lora = lora_qwen3(["q_proj", "v_proj"], apply_lora_to_mlp=True, **QWEN3, lora_rank=4, lora_alpha=8).eval()
    missing, unexpected = lora.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and all("lora_" in k for k in missing)
    x = torch.randint(0, TINY["vocab_size"], (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(lora(x), base(x))


# Parameter counts from each Qwen/Qwen3-* config.json (vocab 151936, head_dim 128, q/k norms of 128,
# no biases), checked against the Hugging Face safetensors metadata ("Model size"). 0.6B, 1.7B and
# 4B tie their embeddings (config.json tie_word_embeddings: true; Qwen3 model cards: "Tie
# Embedding: Yes"). Qwen3-1.7B's safetensors files store lm_head.weight as well, so its published
# size, 2,031,739,904, counts the 151936 x 2048 table twice: the tied model has that minus
# 311,164,928 = 1,720,574,976 parameters.
PUBLISHED = {
    "0_6b": 596_049_920,
    "1_7b": 2_031_739_904 - 151_936 * 2048,
    "4b": 4_022_468_096,
    "8b": 8_190_735_360,
    "14b": 14_768_307_200,
    "32b": 32_762_123_264,
}
BUILDERS = [n for n in qwen3_pkg.__all__ if n not in ("qwen3", "lora_qwen3") and "okenizer" not in n]


def _size(name):
    return name.replace("lora_", "").replace("qwen3_", "").replace("_base", "").replace("_instruct", "")


def test_every_size_is_built():
    assert {_size(n) for n in BUILDERS} == set(PUBLISHED) and len(BUILDERS) == 22


@pytest.mark.parametrize("name", BUILDERS)
def test_published_parameter_counts(name):
    args = (["q_proj", "v_proj"],) if name.startswith("lora_") else ()
    published = PUBLISHED[_size(name)]
    assert abs(base_param_count(getattr(qwen3_pkg, name), *args) - published) / published < 1e-3


def test_0_6b_by_hand():
    d, hd, layer_attn = 1024, 128, 1024 * 128 * (16 + 2 * 8) + 16 * 128 * 1024 + 2 * 128
    layer = layer_attn + 3 * d * 3072 + 2 * d
    assert base_param_count(qwen3_pkg.qwen3_0_6b_base) == 151_936 * d + 28 * layer + d
    with torch.device("meta"):
        model = qwen3_pkg.qwen3_0_6b_base()
    assert model.output.weight is model.tok_embeddings.weight and model.layers[0].attn.head_dim == hd
