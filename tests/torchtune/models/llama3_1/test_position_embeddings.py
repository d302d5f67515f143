"""Llama3ScaledRoPE against transformers' llama3 RoPE frequencies, and its reading of config.json."""

import pytest
import torch

from torchtune.models.llama3_1 import Llama3ScaledRoPE
from torchtune.models.llama3_1._position_embeddings import rope_settings_from_hf_config
from torchtune.modules import RotaryPositionalEmbeddings


def _transformers_inv_freq(head_dim, base, factor, low, high, original):
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    config = LlamaConfig(hidden_size=head_dim * 4, num_attention_heads=4, rope_parameters=dict(
        rope_type="llama3", rope_theta=base, factor=factor, low_freq_factor=low, high_freq_factor=high,
        original_max_position_embeddings=original))
    inv_freq, attention_factor = ROPE_INIT_FUNCTIONS["llama3"](config, "cpu")
    assert attention_factor == 1.0
    return inv_freq


@pytest.mark.parametrize("head_dim, base, factor, original", [(128, 500_000, 8, 8192), (64, 500_000, 32, 8192),
                                                             (16, 500_000, 8, 16)])
def test_frequencies_match_transformers(head_dim, base, factor, original):
    rope = Llama3ScaledRoPE(head_dim, max_seq_len=64, base=base, scale_factor=factor, old_context_len=original)
    expected = _transformers_inv_freq(head_dim, float(base), float(factor), 1.0, 4.0, original)
    torch.testing.assert_close(rope.theta, expected.float(), rtol=1e-6, atol=0)
    # Frequencies fall on both sides of the band edges, so each branch is exercised.
    plain = RotaryPositionalEmbeddings(head_dim, max_seq_len=64, base=base).theta
    ratio = plain / rope.theta
    assert (ratio == factor).any() and ((ratio > 1) & (ratio < factor)).any()
    assert (ratio == 1).any() == (original > 2 * torch.pi * 4)


def test_scale_factor_one_is_plain_rope():
    x = torch.randn(2, 10, 3, 16)
    scaled = Llama3ScaledRoPE(16, max_seq_len=32, base=500_000, scale_factor=1)
    plain = RotaryPositionalEmbeddings(16, max_seq_len=32, base=500_000)
    torch.testing.assert_close(scaled(x), plain(x), rtol=0, atol=0)


def test_cache_covers_max_seq_len_and_input_pos():
    rope = Llama3ScaledRoPE(16, max_seq_len=32)
    assert rope.cache.shape == (32, 8, 2)
    x = torch.randn(1, 4, 2, 16)
    pos = torch.arange(5, 9)[None]
    torch.testing.assert_close(rope(x, input_pos=pos), rope(torch.cat([torch.zeros(1, 5, 2, 16), x], 1))[:, 5:])
    with pytest.raises(ValueError, match="max_seq_len"):
        rope(torch.randn(1, 33, 2, 16))


def test_empty_band_raises():
    with pytest.raises(ValueError, match="high_freq_factor"):
        Llama3ScaledRoPE(16, low_freq_factor=4, high_freq_factor=4)


_SCALED = dict(rope_base=500000.0, scale_factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, old_context_len=8192)


@pytest.mark.parametrize("config, expected", [
    # transformers 5 config.json
    ({"rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                          "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}, _SCALED),
    # transformers 4 config.json (Meta's published Llama 3.1 files)
    ({"rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}},
     _SCALED),
    ({"rope_theta": 500000.0, "rope_scaling": None}, dict(rope_base=500000.0, scale_factor=1)),
    ({"rope_parameters": {"rope_type": "default", "rope_theta": 1e5}}, dict(rope_base=1e5, scale_factor=1)),
], ids=["tf5-llama3", "tf4-llama3", "tf4-plain", "tf5-plain"])
def test_rope_settings_from_both_config_layouts(config, expected):
    assert rope_settings_from_hf_config(config) == expected


@pytest.mark.parametrize("config, match", [({}, "rope_theta"),
                                           ({"rope_theta": 1e4, "rope_scaling": {"rope_type": "yarn"}}, "yarn")])
def test_rope_settings_errors(config, match):
    with pytest.raises(ValueError, match=match):
        rope_settings_from_hf_config(config)
