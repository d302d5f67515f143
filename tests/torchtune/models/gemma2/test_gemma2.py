"""Gemma 2 against `transformers`' Gemma2ForCausalLM: Gemma's blocks plus post-attention and
post-MLP norms, query_pre_attn_scalar, attention and final logit soft-capping, and alternating
local (sliding-window) / global layers; and its sizes."""

import pytest
import torch

from tests.torchtune.models.gemma.gemma_reference import (
    TINY, WINDOW, check_family, check_lora, hf_dims, save_reference, tokens, window_warnings,
)
from tests.torchtune.models.hf_parity import load_through_checkpointer
from tests.torchtune.models.llama3.hf_reference import base_param_count
from torchtune.models.gemma2 import gemma2, gemma2_27b, gemma2_2b, gemma2_9b, lora_gemma2
from torchtune.modules.softcapping import softcapped_attention

# Caps far below the published 50 / 30, so that tanh is far from linear on these scores and logits;
# query_pre_attn_scalar not the head size (as in 27B).
DIMS = dict(TINY, rope_base=10_000, hidden_capping_value=0.5, final_capping_value=2.0, sliding_window_size=WINDOW,
            query_pre_attn_scalar=20)


def test_gemma2_matches_transformers(tmp_path):
    from transformers import Gemma2Config, Gemma2ForCausalLM

    config = Gemma2Config(**hf_dims(rope_parameters={"rope_type": "default", "rope_theta": 10_000.0},
                                    attn_logit_softcapping=0.5, final_logit_softcapping=2.0, sliding_window=WINDOW,
                                    query_pre_attn_scalar=20))
    assert config.layer_types == ["sliding_attention", "full_attention"]
    ref = save_reference(tmp_path / "hf", Gemma2ForCausalLM, config)
    errors = check_family(ref, tmp_path / "hf", "GEMMA2", lambda: gemma2(**DIMS), tmp_path)
    print("gemma2", errors)
    assert max(errors.values()) <= 1e-5, errors

    # A model built with another window than config.json's is loaded with a warning naming both.
    _, sd = load_through_checkpointer(tmp_path / "hf", "GEMMA2", tmp_path / "again")
    with window_warnings() as warned:
        gemma2(**dict(DIMS, sliding_window_size=WINDOW + 1)).load_state_dict(sd)
    assert len(warned) == 1 and f"[{WINDOW}, None]" in warned[0] and f"[{WINDOW + 1}, None]" in warned[0], warned


def test_layers_alternate_and_caps_are_wired():
    model = gemma2(**dict(DIMS, num_layers=4))
    assert [layer.attn.sliding_window for layer in model.layers] == [WINDOW, None, WINDOW, None]
    attn = model.layers[0].attn
    assert attn.logit_softcapping == 0.5 and attn.scale == pytest.approx(20**-0.5)
    assert model.output_softcapping == 2.0
    logits = model(tokens(0))
    assert logits.abs().max() <= 2.0  # every logit inside the cap (saturated ones round to it)


@pytest.mark.parametrize("cap", ["hidden_capping_value", "final_capping_value"])
def test_non_positive_caps_are_refused(cap):
    with pytest.raises(ValueError, match="must be a positive cap"):
        gemma2(**dict(DIMS, **{cap: 0.0}))


def test_softcapped_attention_against_formula():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 4, 7, 8), torch.randn(2, 2, 7, 8), torch.randn(2, 2, 7, 8)
    allowed = torch.rand(7, 7) > 0.3
    allowed |= torch.eye(7, dtype=torch.bool)
    out = softcapped_attention(q, k, v, softcap=1.5, scale=0.3, attn_mask=allowed)
    k_rep, v_rep = k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1)
    scores = 1.5 * torch.tanh((q @ k_rep.transpose(-1, -2)) * 0.3 / 1.5)
    expected = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1) @ v_rep
    torch.testing.assert_close(out, expected)
    causal = softcapped_attention(q, k, v, softcap=1.5, is_causal=True)
    scores = 1.5 * torch.tanh((q @ k_rep.transpose(-1, -2)) * 8**-0.5 / 1.5)
    tril = torch.ones(7, 7, dtype=torch.bool).tril()
    torch.testing.assert_close(causal, torch.softmax(scores.masked_fill(~tril, float("-inf")), -1) @ v_rep)


def test_lora_gemma2_merged_equals_unmerged():
    err = check_lora(lambda: gemma2(**DIMS),
                     lambda: lora_gemma2(["q_proj", "v_proj", "output_proj"], True, **DIMS, lora_rank=4, lora_alpha=8),
                     rank=4, alpha=8)
    assert err <= 1e-5  # relative to the largest logit


def test_lora_gemma2_trains_through_the_capped_loss():
    from torchtune.modules.loss import LinearCrossEntropyLoss

    model = lora_gemma2(["q_proj", "v_proj"], **DIMS, lora_rank=4, lora_alpha=8)
    x = tokens(3)
    labels = tokens(4)
    expected = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), labels.flatten())
    loss_fn = LinearCrossEntropyLoss(num_output_chunks=3)
    loss_fn.set_model_output(model)  # the soft-cap must survive the fused projection + loss
    torch.testing.assert_close(loss_fn(model(x), labels), expected)


# Parameter counts of google/gemma-2-2b, -9b and -27b (Hugging Face safetensors metadata).
@pytest.mark.parametrize("builder, published", [
    (gemma2_2b, 2_614_341_888), (gemma2_9b, 9_241_705_984), (gemma2_27b, 27_227_128_320),
])
def test_published_parameter_counts(builder, published):
    assert base_param_count(builder) == published
