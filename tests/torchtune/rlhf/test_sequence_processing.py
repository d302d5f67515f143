"""Sequence utilities against loops written out here, and against TRL's log-prob helper."""

from types import SimpleNamespace

import pytest
import torch

from torchtune.rlhf import (
    get_batch_log_probs,
    logits_to_logprobs,
    truncate_sequence_at_first_stop_token,
    truncate_sequence_for_logprobs,
)


def test_truncate_at_first_stop_token_keeps_the_stop_and_fills_after_it():
    seqs = torch.tensor([[5, 3, 9, 7, 9], [9, 4, 4, 4, 4], [1, 2, 3, 4, 5], [6, 8, 6, 8, 6]])
    stops = torch.tensor([9, 8])
    mask, out = truncate_sequence_at_first_stop_token(seqs, stops, fill_value=-1)
    expected_mask, expected = torch.zeros_like(mask), seqs.clone()
    for i, row in enumerate(seqs.tolist()):  # independent: scan each row for its first stop
        first = next((j for j, t in enumerate(row) if t in (9, 8)), None)
        if first is not None:
            expected_mask[i, first + 1:] = True
            expected[i, first + 1:] = -1
    assert torch.equal(mask, expected_mask) and torch.equal(out, expected)
    assert seqs[0, 4] == 9  # the input is left as it was


def test_logits_to_logprobs_with_temperature():
    g = torch.Generator().manual_seed(0)
    logits, seqs = torch.randn(2, 5, 11, generator=g), torch.randint(0, 11, (2, 5), generator=g)
    out = logits_to_logprobs(logits, seqs, temperature=0.7)
    for b in range(2):
        for s in range(5):
            z = logits[b, s].double() / 0.7
            expected = z[seqs[b, s]] - torch.logsumexp(z, dim=0)
            assert out[b, s].item() == pytest.approx(expected.item(), abs=1e-5)
    with pytest.raises(ValueError, match="temperature"):
        logits_to_logprobs(logits, seqs, temperature=0.0)


@pytest.mark.parametrize("average", [False, True])
def test_get_batch_log_probs_sums_or_averages_the_labelled_next_tokens(average):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 6, 13, generator=g)
    labels = torch.randint(0, 13, (3, 6), generator=g)
    labels[0, :3] = -100  # prompt
    labels[1, 4:] = -100  # padding
    labels[2, 1:] = -100  # nothing labelled after the first position
    out = get_batch_log_probs(logits, labels, return_average_logprobs=average)
    for b in range(3):
        terms = [torch.log_softmax(logits[b, t].double(), 0)[labels[b, t + 1]].item()
                 for t in range(5) if labels[b, t + 1] != -100]
        expected = (sum(terms) / len(terms) if terms else 0.0) if average else sum(terms)
        assert out[b].item() == pytest.approx(expected, abs=1e-5)


def test_get_batch_log_probs_equals_trl():
    from trl.experimental.cpo import CPOTrainer

    g = torch.Generator().manual_seed(2)
    logits = torch.randn(4, 7, 9, generator=g)
    labels = torch.randint(0, 9, (4, 7), generator=g)
    labels[:, :2] = -100
    labels[3, 5:] = -100
    for average in (False, True):
        torch.testing.assert_close(get_batch_log_probs(logits, labels, return_average_logprobs=average),
                                   CPOTrainer.get_batch_logps(logits, labels, average_log_prob=average))


def test_get_batch_log_probs_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same"):
        get_batch_log_probs(torch.zeros(2, 5, 3), torch.zeros(2, 4, dtype=torch.long))


def test_truncate_sequence_for_logprobs_scores_the_response():
    logits = torch.arange(2 * 7 * 3, dtype=torch.float).view(2, 7, 3)
    out = truncate_sequence_for_logprobs(logits, context_length=3)
    # Positions 2..5 predict the response tokens 3..6.
    assert torch.equal(out, logits[:, 2:6])
    with pytest.raises(ValueError, match="context_length"):
        truncate_sequence_for_logprobs(logits, context_length=0)
