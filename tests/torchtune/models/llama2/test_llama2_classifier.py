"""Llama2 classifier and reward heads against `transformers`' LlamaForSequenceClassification."""

import pytest
import torch

import torchtune.models.llama2._model_builders as builders
from tests.test_utils import save_hf_llama
from tests.torchtune.models.hf_parity import check_sequence_classifier, load_through_checkpointer, padded_batch
from torchtune.models.llama2 import (
    llama2,
    llama2_classifier,
    llama2_reward_7b,
    lora_llama2_classifier,
    lora_llama2_reward_7b,
    qlora_llama2_reward_7b,
)
from torchtune.modules.peft import LoRALinear
from torchtune.training import update_state_dict_for_classifier

DIMS = dict(vocab_size=256, num_layers=2, num_heads=4, num_kv_heads=2, embed_dim=64, intermediate_dim=128,
            max_seq_len=128, norm_eps=1e-5)


def _hf_config(num_labels):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=DIMS["vocab_size"], hidden_size=DIMS["embed_dim"], intermediate_size=DIMS["intermediate_dim"],
        num_hidden_layers=DIMS["num_layers"], num_attention_heads=DIMS["num_heads"],
        num_key_value_heads=DIMS["num_kv_heads"], max_position_embeddings=DIMS["max_seq_len"],
        rms_norm_eps=DIMS["norm_eps"], num_labels=num_labels, pad_token_id=0, tie_word_embeddings=False,
    )


@pytest.mark.parametrize("num_classes", [1, 3], ids=["reward", "classifier"])
def test_scores_equal_llama_for_sequence_classification(tmp_path, num_classes):
    from transformers import LlamaForSequenceClassification

    check_sequence_classifier(
        LlamaForSequenceClassification, _hf_config(num_classes),
        lambda: llama2_classifier(num_classes, **DIMS), tmp_path / "hf", tmp_path,
    )


def test_base_checkpoint_loads_into_a_classifier(tmp_path):
    """A causal LM's checkpoint starts a classifier: its LM head is replaced by the model's fresh head."""
    save_hf_llama(tmp_path / "hf", **DIMS)
    _, sd = load_through_checkpointer(tmp_path / "hf", "LLAMA2", tmp_path / "out")
    base = llama2(**DIMS).eval()
    base.load_state_dict(sd, strict=True)
    classifier = llama2_classifier(2, **DIMS).eval()
    fresh_head = classifier.output.weight.detach().clone()
    assert sd["output.weight"].shape == (DIMS["vocab_size"], DIMS["embed_dim"])
    update_state_dict_for_classifier(sd, classifier.named_parameters())
    classifier.load_state_dict(sd, strict=True)
    torch.testing.assert_close(classifier.output.weight, fresh_head)
    tokens, _ = padded_batch(DIMS["vocab_size"], [9, 9])
    with torch.no_grad():
        # Same body: the classifier is the base model's last hidden state through the new head.
        hidden = base.norm(base.layers[1](base.layers[0](base.tok_embeddings(tokens))))
        torch.testing.assert_close(classifier(tokens), hidden @ fresh_head.T, atol=1e-5, rtol=1e-5)


def test_lora_classifier_adapts_the_head(tmp_path):
    model = lora_llama2_classifier(["q_proj", "v_proj"], apply_lora_to_output=True, num_classes=3, **DIMS,
                                   lora_rank=4, lora_alpha=8)
    assert isinstance(model.output, LoRALinear) and model.output.weight.shape == (3, DIMS["embed_dim"])
    plain = llama2_classifier(3, **DIMS)
    missing, unexpected = model.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all("lora_" in k for k in missing)


# Llama 2 7B (6,738,415,616 parameters, the published meta-llama/Llama-2-7b-hf) without its
# [32000, 4096] LM head and with a [1, 4096] score head.
REWARD_7B = 6_738_415_616 - 32_000 * 4096 + 4096


def test_reward_7b_sizes(monkeypatch):
    with torch.device("meta"):
        dense = llama2_reward_7b()
        lora = lora_llama2_reward_7b(["q_proj", "v_proj"], apply_lora_to_output=True)
    count = sum(p.numel() for p in dense.parameters())
    assert abs(count - REWARD_7B) / REWARD_7B < 1e-3, count
    assert sum(p.numel() for n, p in lora.named_parameters() if "lora_" not in n) == count
    assert dense.output.weight.shape == (1, 4096)
    calls = []
    monkeypatch.setattr(builders, "lora_llama2_reward_7b", lambda *a: calls.append(a))
    qlora_llama2_reward_7b(["q_proj"], False, True, 4, 8.0, 0.0, False)
    assert calls == [(["q_proj"], False, True, 4, 8.0, 0.0, False, True)]
