import pytest
import torch
import torch.nn.functional as F

from torchtune.modules.loss import CEWithChunkedOutputLoss

B, S, V = 3, 20, 37


def _data(dtype=torch.float32):
    logits = torch.randn(B, S, V, dtype=dtype, requires_grad=True)
    labels = torch.randint(0, V, (B, S))
    labels[0, :7] = -100
    labels[2, 15:] = -100
    return logits, labels


def _reference(logits, labels, reduction):
    return F.cross_entropy(logits.float().reshape(-1, V), labels.reshape(-1), ignore_index=-100, reduction=reduction)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("num_chunks", [1, 3, 8])
def test_chunk_list_matches_full_cross_entropy(reduction, num_chunks):
    logits, labels = _data()
    loss = CEWithChunkedOutputLoss(num_output_chunks=num_chunks)(
        list(logits.chunk(num_chunks, dim=1)), labels, reduction=reduction
    )
    expected = _reference(logits, labels, reduction)
    torch.testing.assert_close(loss, expected)
    (grad,) = torch.autograd.grad(loss, logits)
    (expected_grad,) = torch.autograd.grad(expected, logits)
    torch.testing.assert_close(grad, expected_grad)


def test_single_tensor_input_and_default_reduction():
    logits, labels = _data()
    loss_fn = CEWithChunkedOutputLoss(num_output_chunks=4, reduction="sum")
    torch.testing.assert_close(loss_fn(logits, labels), _reference(logits, labels, "sum"))
    torch.testing.assert_close(loss_fn(logits, labels, reduction="mean"), _reference(logits, labels, "mean"))


def test_bf16_logits_are_upcast_per_chunk():
    logits, labels = _data(torch.bfloat16)
    loss = CEWithChunkedOutputLoss(num_output_chunks=4)(list(logits.chunk(4, dim=1)), labels)
    assert loss.dtype == torch.float32
    # The reference upcasts the whole bf16 tensor at once; values must agree to fp32 precision.
    torch.testing.assert_close(loss, _reference(logits, labels, "mean"))


def test_sum_equals_mean_times_trained_tokens():
    logits, labels = _data()
    loss_fn = CEWithChunkedOutputLoss(num_output_chunks=2)
    n = (labels != -100).sum()
    torch.testing.assert_close(loss_fn(logits, labels, reduction="sum"), loss_fn(logits, labels) * n)


def test_all_ignored_gives_zero_with_a_graph():
    logits, labels = _data()
    labels.fill_(-100)
    loss = CEWithChunkedOutputLoss(num_output_chunks=2)(list(logits.chunk(2, dim=1)), labels)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.count_nonzero(logits.grad) == 0


def test_custom_ignore_index():
    logits, labels = _data()
    labels[labels == -100] = 0
    loss = CEWithChunkedOutputLoss(num_output_chunks=2, ignore_index=0)(logits, labels)
    expected = F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1), ignore_index=0)
    torch.testing.assert_close(loss, expected)


def test_no_grad_path_and_errors():
    logits, labels = _data()
    loss_fn = CEWithChunkedOutputLoss(num_output_chunks=2)
    with torch.no_grad():
        torch.testing.assert_close(loss_fn(logits, labels), _reference(logits, labels, "mean"))
    with pytest.raises(ValueError, match="adding up"):
        loss_fn(list(logits[:, :10].chunk(2, dim=1)), labels)
    with pytest.raises(ValueError, match="reduction"):
        loss_fn(logits, labels, reduction="none")
    with pytest.raises(ValueError, match="num_output_chunks"):
        CEWithChunkedOutputLoss(num_output_chunks=0)


def test_compute_cross_entropy_normalizes_by_its_trained_tokens_unless_told_not_to():
    from torchtune.modules.loss import CEWithChunkedOutputLoss

    loss = CEWithChunkedOutputLoss()
    logits, labels = torch.randn(6, 11), torch.tensor([1, 2, -100, 4, -100, 5])
    total = F.cross_entropy(logits, labels, ignore_index=-100, reduction="sum")
    torch.testing.assert_close(loss.compute_cross_entropy(logits, labels, normalize=False), total)
    torch.testing.assert_close(loss.compute_cross_entropy(logits, labels), total / 4)
    assert loss.compute_cross_entropy(logits, torch.full((6,), -100)).item() == 0.0
