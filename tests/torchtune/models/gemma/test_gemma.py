"""Gemma against `transformers`' GemmaForCausalLM ((1 + w) RMSNorm, sqrt(d)-scaled embeddings,
GeGLU with tanh GELU, tied output, head_dim != embed_dim // num_heads), and its sizes."""

import pytest
import torch

from tests.torchtune.models.gemma.gemma_reference import TINY, check_family, check_lora, hf_dims, save_reference
from tests.torchtune.models.llama3.hf_reference import base_param_count
from torchtune.models.gemma import GemmaRMSNorm, gemma, gemma_2b, gemma_7b, lora_gemma, lora_gemma_2b, qlora_gemma_7b
from torchtune.modules import TiedLinear

DIMS = dict(TINY, rope_base=10_000)


def test_gemma_matches_transformers(tmp_path):
    from transformers import GemmaConfig, GemmaForCausalLM

    config = GemmaConfig(**hf_dims(rope_parameters={"rope_type": "default", "rope_theta": 10_000.0},
                                   hidden_act="gelu_pytorch_tanh"))
    ref = save_reference(tmp_path / "hf", GemmaForCausalLM, config)
    errors = check_family(ref, tmp_path / "hf", "GEMMA", lambda: gemma(**DIMS), tmp_path)
    print("gemma", errors)
    assert max(errors.values()) <= 1e-5, errors


def test_gemma_rms_norm_against_formula():
    torch.manual_seed(0)
    norm = GemmaRMSNorm(8, eps=1e-6)
    assert torch.equal(norm.scale, torch.zeros(8))  # zero gain is the identity scale
    with torch.no_grad():
        norm.scale.normal_()
    x = torch.randn(3, 5, 8, dtype=torch.bfloat16)
    xf = x.float()
    expected = (xf / torch.sqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6) * (1 + norm.scale)).to(torch.bfloat16)
    out = norm(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, expected, atol=0, rtol=0)


def test_lora_gemma_merged_equals_unmerged():
    lora_kwargs = dict(lora_rank=4, lora_alpha=8)
    err = check_lora(lambda: gemma(**DIMS),
                     lambda: lora_gemma(["q_proj", "k_proj", "v_proj", "output_proj"], True, **DIMS, **lora_kwargs),
                     rank=4, alpha=8)
    assert err <= 1e-5  # relative to the largest logit


def test_builders_are_tied_and_wired():
    model = gemma(**DIMS)
    assert isinstance(model.output, TiedLinear) and model.output.weight is model.tok_embeddings.weight
    assert model.tok_embeddings.scale == pytest.approx(64**0.5)
    assert isinstance(model.layers[0].sa_norm, GemmaRMSNorm) and model.layers[0].attn.head_dim == 24
    qlora = lora_gemma(["q_proj", "v_proj"], **DIMS, lora_rank=4, lora_alpha=8, quantize_base=True)
    assert type(qlora.layers[0].attn.q_proj.weight).__name__ == "NF4Tensor"
    assert qlora_gemma_7b.__defaults__[-1] is True or qlora_gemma_7b.__kwdefaults__ == {"quantize_base": True}


# Parameter counts of google/gemma-2b and google/gemma-7b (Hugging Face safetensors metadata,
# tied embeddings counted once).
@pytest.mark.parametrize("builder, published", [(gemma_2b, 2_506_172_416), (gemma_7b, 8_537_680_896)])
def test_published_parameter_counts(builder, published):
    assert base_param_count(builder) == published


def test_lora_size_builder_keeps_the_base_count():
    assert base_param_count(lora_gemma_2b, ["q_proj", "v_proj"]) == 2_506_172_416
