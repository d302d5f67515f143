"""Mistral builders: published sizes (base, LoRA, QLoRA, reward) and the reward/classifier heads
against `transformers`' MistralForSequenceClassification (with a sliding window)."""

import pytest
import torch

import torchtune.models.mistral._model_builders as builders
from tests.torchtune.models.hf_parity import check_sequence_classifier
from torchtune.models.mistral import (
    lora_mistral_7b,
    lora_mistral_classifier,
    lora_mistral_reward_7b,
    mistral_7b,
    mistral_classifier,
    mistral_reward_7b,
    qlora_mistral_7b,
    qlora_mistral_reward_7b,
)
from torchtune.modules.peft import LoRALinear

# mistralai/Mistral-7B-v0.1: 7,241,732,096 parameters (its published size; the tensors its config.json
# implies). The reward model drops the [32000, 4096] LM head for a [1, 4096] score head.
MISTRAL_7B = 7_241_732_096
REWARD_7B = MISTRAL_7B - 32_000 * 4096 + 4096
SIZES = [
    ("base", mistral_7b, lora_mistral_7b, qlora_mistral_7b, "lora_mistral_7b", MISTRAL_7B),
    ("reward", mistral_reward_7b, lora_mistral_reward_7b, qlora_mistral_reward_7b, "lora_mistral_reward_7b",
     REWARD_7B),
]


@pytest.mark.parametrize("name, base, lora, qlora, lora_name, expected", SIZES, ids=[s[0] for s in SIZES])
def test_published_parameter_counts(name, base, lora, qlora, lora_name, expected, monkeypatch):
    with torch.device("meta"):
        dense = base()
        adapted = lora(["q_proj", "v_proj", "output_proj"], apply_lora_to_mlp=True, apply_lora_to_output=True)
    count = sum(p.numel() for p in dense.parameters())
    assert abs(count - expected) / expected < 1e-3, count
    assert sum(p.numel() for n, p in adapted.named_parameters() if "lora_" not in n) == count
    # v0.1's window, in every layer of every variant.
    assert {layer.attn.sliding_window for m in (dense, adapted) for layer in m.layers} == {4096}
    calls = []
    monkeypatch.setattr(builders, lora_name, lambda *a: calls.append(a))
    qlora(["q_proj"], True, False, 4, 8.0, 0.0, False)
    assert calls == [(["q_proj"], True, False, 4, 8.0, 0.0, False, True)]  # quantize_base=True


DIMS = dict(vocab_size=128, num_layers=2, num_heads=4, num_kv_heads=2, embed_dim=64, intermediate_dim=96,
            max_seq_len=64, norm_eps=1e-5, rope_base=10_000)
WINDOW = 6  # shorter than the longest test sequence (20)


def _hf_config(num_labels):
    from transformers import MistralConfig

    return MistralConfig(
        vocab_size=DIMS["vocab_size"], hidden_size=DIMS["embed_dim"], intermediate_size=DIMS["intermediate_dim"],
        num_hidden_layers=DIMS["num_layers"], num_attention_heads=DIMS["num_heads"],
        num_key_value_heads=DIMS["num_kv_heads"], max_position_embeddings=DIMS["max_seq_len"],
        sliding_window=WINDOW, rms_norm_eps=DIMS["norm_eps"], rope_theta=float(DIMS["rope_base"]),
        num_labels=num_labels, pad_token_id=0, tie_word_embeddings=False, attn_implementation="eager",
    )


@pytest.mark.parametrize("num_classes", [1, 4], ids=["reward", "classifier"])
def test_scores_equal_mistral_for_sequence_classification(tmp_path, num_classes):
    from transformers import MistralForSequenceClassification

    check_sequence_classifier(
        MistralForSequenceClassification, _hf_config(num_classes),
        lambda: mistral_classifier(num_classes, **DIMS, sliding_window=WINDOW), tmp_path / "hf", tmp_path,
    )


def test_lora_classifier_adapts_the_head():
    model = lora_mistral_classifier(["q_proj"], apply_lora_to_output=True, num_classes=2, **DIMS, lora_rank=4,
                                    lora_alpha=8, sliding_window=WINDOW)
    assert isinstance(model.output, LoRALinear) and model.output.weight.shape == (2, DIMS["embed_dim"])
    plain = mistral_classifier(2, **DIMS, sliding_window=WINDOW)
    missing, unexpected = model.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all("lora_" in k for k in missing)
