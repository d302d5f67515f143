"""Reward checkpoints: a transformers LlamaForSequenceClassification converted with reward_hf_to_tune scores
sequences exactly as transformers does, and reward_tune_to_hf gives its state dict back."""

import pytest
import torch

from tests.test_utils.hf_fixtures import TINY_LLAMA
from torchtune.models.llama2 import llama2_classifier
from torchtune.rlhf.utils import reward_hf_to_tune, reward_tune_to_hf

_DIMS = {k: v for k, v in TINY_LLAMA.items() if k != "intermediate_dim"}


def _hf_reward_model():
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig(
        vocab_size=TINY_LLAMA["vocab_size"], hidden_size=TINY_LLAMA["embed_dim"],
        intermediate_size=TINY_LLAMA["intermediate_dim"], num_hidden_layers=TINY_LLAMA["num_layers"],
        num_attention_heads=TINY_LLAMA["num_heads"], num_key_value_heads=2,
        max_position_embeddings=TINY_LLAMA["max_seq_len"], rms_norm_eps=TINY_LLAMA["norm_eps"],
        rope_theta=TINY_LLAMA["rope_base"], num_labels=1, pad_token_id=0, tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.08)
    return model


def test_converted_reward_model_scores_as_transformers():
    hf = _hf_reward_model()
    dims = dict(num_heads=TINY_LLAMA["num_heads"], num_kv_heads=2, dim=TINY_LLAMA["embed_dim"])
    sd = reward_hf_to_tune(hf.state_dict(), **dims)
    assert "output.weight" in sd and not any(k.startswith("score") for k in sd)
    ours = llama2_classifier(num_classes=1, **dict(_DIMS, num_kv_heads=2),
                             intermediate_dim=TINY_LLAMA["intermediate_dim"]).eval()
    ours.load_state_dict(sd, strict=True)
    tokens = torch.randint(1, TINY_LLAMA["vocab_size"], (3, 12))  # no padding: the score is the last position's
    with torch.no_grad():
        expected = hf(tokens).logits  # [b, 1]
        got = ours(tokens)[:, -1]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)

    back = reward_tune_to_hf(sd, **dims)
    original = hf.state_dict()
    assert back.keys() == original.keys()
    for k, v in original.items():
        assert torch.equal(back[k], v), k


def test_a_score_bias_is_dropped_and_an_lm_head_refused():
    hf_sd = _hf_reward_model().state_dict()
    dims = dict(num_heads=TINY_LLAMA["num_heads"], num_kv_heads=2, dim=TINY_LLAMA["embed_dim"])
    with_bias = dict(hf_sd, **{"score.bias": torch.zeros(1)})
    assert reward_hf_to_tune(with_bias, **dims).keys() == reward_hf_to_tune(hf_sd, **dims).keys()
    with pytest.raises(KeyError, match="lm_head"):
        reward_hf_to_tune(dict(hf_sd, **{"lm_head.weight": torch.zeros(1)}), **dims)
