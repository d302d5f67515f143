"""Gemma 3 (text decoder) against `transformers`' Gemma3ForCausalLM: Gemma 2's blocks with local
and global layers in a 2:1 pattern here (5:1 in the published models), a RoPE base and linear
scaling per layer kind, a (1 + w) QK-norm and no soft-capping; and its sizes."""

import pytest
import torch

from tests.torchtune.models.gemma.gemma_reference import (
    TINY, WINDOW, check_family, check_lora, hf_dims, save_reference,
)
from tests.torchtune.models.llama3.hf_reference import base_param_count
from torchtune.models.gemma import GemmaRMSNorm
from torchtune.models.gemma3 import gemma3, gemma3_1b, gemma3_270m, gemma3_27b, lora_gemma3

# Three layers, every third global: sliding, sliding, full. Local base 10000, global base 1e6
# stretched 8x (the 4B-27B setting), query_pre_attn_scalar not the head size (as in 27B).
DIMS = dict(TINY, num_layers=3, rope_base=1_000_000.0, local_rope_base=10_000.0, rope_scale_factor=8.0,
            sliding_window_size=WINDOW, sliding_window_pattern=3, query_pre_attn_scalar=20)
ROPE = {"full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1_000_000.0},
        "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0}}


def test_gemma3_matches_transformers(tmp_path):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(**hf_dims(num_hidden_layers=3, rope_parameters=ROPE, sliding_window=WINDOW,
                                        sliding_window_pattern=3, query_pre_attn_scalar=20))
    assert config.layer_types == ["sliding_attention", "sliding_attention", "full_attention"]
    ref = save_reference(tmp_path / "hf", Gemma3ForCausalLM, config)
    assert "model.layers.0.self_attn.q_norm.weight" in ref.state_dict()
    errors = check_family(ref, tmp_path / "hf", "GEMMA3", lambda: gemma3(**DIMS), tmp_path)
    print("gemma3", errors)
    assert max(errors.values()) <= 1e-5, errors


def test_layer_kinds_share_their_rope():
    model = gemma3(**dict(DIMS, num_layers=12, sliding_window_pattern=6))
    windows = [layer.attn.sliding_window for layer in model.layers]
    assert windows == [WINDOW] * 5 + [None] + [WINDOW] * 5 + [None]
    ropes = [layer.attn.pos_embeddings for layer in model.layers]
    local, global_ = ropes[0], ropes[5]
    assert all(r is (global_ if w is None else local) for r, w in zip(ropes, windows))
    assert (local.base, local.scale_factor, global_.base, global_.scale_factor) == (10_000.0, 1.0, 1e6, 8.0)
    assert isinstance(model.layers[0].attn.q_norm, GemmaRMSNorm) and model.output_softcapping is None


def test_lora_gemma3_merged_equals_unmerged():
    err = check_lora(lambda: gemma3(**DIMS),
                     lambda: lora_gemma3(["q_proj", "k_proj", "v_proj"], True, **DIMS, lora_rank=4, lora_alpha=8),
                     rank=4, alpha=8)
    assert err <= 1e-5  # relative to the largest logit


# Parameter counts of google/gemma-3-270m and google/gemma-3-1b-pt (Hugging Face safetensors
# metadata). 27B's text decoder from its text_config, by hand: embeddings + 62 layers + final norm.
def _layer(d, heads, kv, hd, mlp):
    return d * hd * (heads + 2 * kv) + heads * hd * d + 3 * d * mlp + 4 * d + 2 * hd


@pytest.mark.parametrize("builder, expected", [
    (gemma3_270m, 268_098_176),
    (gemma3_1b, 999_885_952),
    (gemma3_27b, 262_208 * 5376 + 62 * _layer(5376, 32, 16, 128, 21_504) + 5376),
])
def test_parameter_counts(builder, expected):
    assert base_param_count(builder) == expected
