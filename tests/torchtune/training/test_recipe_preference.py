"""The preference recipe pieces: pair collate, the DPO micro-batch objective and its reward metrics,
checked against computations written out here (per-sequence loops over token log-probs)."""

import math

import pytest
import torch

from torchtune import training
from torchtune.models.llama2 import lora_llama2
from torchtune.modules.peft import get_adapter_params, set_trainable_params
from torchtune.rlhf.loss import DPOLoss, SimPOLoss

_DIMS = dict(vocab_size=64, num_layers=2, num_heads=2, num_kv_heads=2, embed_dim=32, max_seq_len=32)


def _pairs():
    return [
        {"chosen_input_ids": [1, 5, 6, 7], "chosen_labels": [-100, -100, 6, 7],
         "rejected_input_ids": [1, 5, 9], "rejected_labels": [-100, -100, 9]},
        {"chosen_input_ids": [1, 3, 4, 8, 2], "chosen_labels": [-100, 3, 4, 8, 2],
         "rejected_input_ids": [1, 3, 11, 12, 13, 2], "rejected_labels": [-100, 3, 11, 12, 13, 2]},
    ]


def test_collate_puts_chosen_rows_first_and_counts_unpadded_tokens():
    out = training.padded_collate_preference(_pairs(), padding_idx=0, ignore_idx=-100)
    assert out["tokens"].tolist() == [[1, 5, 6, 7, 0, 0], [1, 3, 4, 8, 2, 0], [1, 5, 9, 0, 0, 0], [1, 3, 11, 12, 13, 2]]
    assert out["labels"].tolist()[2] == [-100, -100, 9, -100, -100, -100]
    assert out["num_tokens"].item() == 4 + 3 + 5 + 6


def _model():
    torch.manual_seed(0)
    model = lora_llama2(["q_proj", "v_proj"], lora_rank=4, lora_alpha=8, **_DIMS)
    with torch.no_grad():  # non-zero adapters, so policy and reference differ
        for name, p in model.named_parameters():
            if "lora_b" in name:
                p.normal_(0, 0.1)
    set_trainable_params(model, get_adapter_params(model))
    return model


def _sequence_logp(logits, tokens, labels, average=False):
    """Sum (or mean) over t of log p(labels[t] | tokens[:t]) for the labelled positions, one row at a time."""
    out = []
    for row in range(tokens.shape[0]):
        logprobs = torch.log_softmax(logits[row].double(), -1).tolist()
        terms = [logprobs[t - 1][labels[row, t]] for t in range(1, tokens.shape[1]) if labels[row, t] != -100]
        out.append(sum(terms) / len(terms) if average else sum(terms))
    return out


def test_dpo_loss_step_equals_the_loss_written_out():
    from torchtune.modules.peft import disable_adapter

    model, beta = _model(), 0.3
    batch = training.padded_collate_preference(_pairs())
    metrics = training.PreferenceMetrics()
    calls = []

    def reference(tokens):
        calls.append(torch.is_grad_enabled())
        return training.lora_reference(model)(tokens)

    loss, pairs = training.preference_loss_step(model, DPOLoss(beta=beta), dict(batch), reference=reference,
                                                metrics=metrics)
    assert pairs.item() == 2 and calls == [True]  # one reference pass per batch
    with torch.no_grad():
        policy = _sequence_logp(model(batch["tokens"]), batch["tokens"], batch["labels"])
        with disable_adapter(model):
            ref = _sequence_logp(model(batch["tokens"]), batch["tokens"], batch["labels"])
    expected, rewards = 0.0, []
    for i in range(2):
        chosen, rejected = beta * (policy[i] - ref[i]), beta * (policy[2 + i] - ref[2 + i])
        expected += math.log1p(math.exp(-(chosen - rejected)))
        rewards.append((chosen, rejected))
    assert loss.item() == pytest.approx(expected, rel=1e-5)

    loss.backward()  # only the adapters train; the reference pass left no graph
    grads = {n for n, p in model.named_parameters() if p.grad is not None}
    assert grads and all("lora" in n for n in grads)

    logged = metrics.compute()
    assert logged["rewards/chosen"] == pytest.approx(sum(c for c, _ in rewards) / 2, rel=1e-4, abs=1e-6)
    assert logged["rewards/margins"] == pytest.approx(sum(c - r for c, r in rewards) / 2, rel=1e-4, abs=1e-6)
    assert logged["rewards/accuracies"] == sum(c > r for c, r in rewards) / 2
    assert logged["log_probs/rejected"] == pytest.approx((policy[2] + policy[3]) / 2, rel=1e-5)
    assert logged["tokens_per_second_per_gpu"] > 0
    assert metrics.compute() == {}  # the window was consumed


def test_reference_free_losses_use_averaged_log_probs_and_need_no_reference():
    model = _model()
    batch = training.padded_collate_preference(_pairs())
    loss, _ = training.preference_loss_step(model, SimPOLoss(beta=2.0, gamma=0.5), dict(batch))
    with torch.no_grad():
        avg = _sequence_logp(model(batch["tokens"]), batch["tokens"], batch["labels"], average=True)
    expected = sum(math.log1p(math.exp(-(2.0 * (avg[i] - avg[2 + i]) - 0.5))) for i in range(2))
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_validation_pass_leaves_the_training_metrics_alone_and_missing_reference_raises():
    model, metrics = _model(), training.PreferenceMetrics()
    batch = training.padded_collate_preference(_pairs())
    model.eval()
    with torch.no_grad():
        training.preference_loss_step(model, DPOLoss(), dict(batch), reference=training.lora_reference(model),
                                      metrics=metrics)
    assert metrics.compute() == {}
    with pytest.raises(ValueError, match="reference"):
        training.preference_loss_step(model, DPOLoss(), dict(batch))


def test_setup_preference_data_refuses_group_by_length():
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"group_by_length": True, "batch_size": 2, "shuffle": False, "dataset": {}})
    with pytest.raises(ValueError, match="group_by_length"):
        training.setup_preference_data(cfg, None, seed=0)
