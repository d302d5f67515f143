import pytest
import torch
import torch.nn.functional as F

from torchtune.modules.loss import LinearCrossEntropyLoss
from torchtune.modules.loss._fused_linear_ce import linear_cross_entropy
from torchtune.modules.peft import LoRALinear

V, D = 97, 16


def _data(n=23, dtype=torch.float32, weight_grad=True):
    torch.manual_seed(0)
    hidden = torch.randn(n, D, dtype=dtype, requires_grad=True)
    weight = (torch.randn(V, D) * 0.5).to(dtype).requires_grad_(weight_grad)
    labels = torch.randint(0, V, (n,))
    labels[::4] = -100
    return hidden, weight, labels


def _reference(hidden, weight, labels, reduction="sum"):
    """Plain autograd: full logits, upcast to fp32, one cross-entropy call."""
    return F.cross_entropy(F.linear(hidden, weight).float(), labels, ignore_index=-100, reduction=reduction)


def _grads(fn, hidden, weight, labels, scale=1.0):
    h, w = hidden.detach().clone().requires_grad_(True), weight.detach().clone().requires_grad_(weight.requires_grad)
    loss = fn(h, w, labels)
    (loss * scale).backward()
    return loss.detach(), h.grad, w.grad


@pytest.mark.parametrize("chunk_size", [1, 5, 23, 100])
def test_matches_autograd_in_fp32(chunk_size):
    hidden, weight, labels = _data()
    fused = _grads(lambda h, w, y: linear_cross_entropy(h, w, y, chunk_size=chunk_size), hidden, weight, labels, 0.3)
    ref = _grads(_reference, hidden, weight, labels, 0.3)
    for got, expected in zip(fused, ref):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_matches_autograd_in_bf16():
    hidden, weight, labels = _data(n=40, dtype=torch.bfloat16)
    fused = _grads(lambda h, w, y: linear_cross_entropy(h, w, y, chunk_size=16), hidden, weight, labels)
    ref = _grads(_reference, hidden, weight, labels)
    torch.testing.assert_close(fused[0], ref[0], atol=1e-3, rtol=1e-4)  # fp32 loss from the same bf16 logits
    assert fused[1].dtype == fused[2].dtype == torch.bfloat16
    torch.testing.assert_close(fused[1], ref[1], atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(fused[2], ref[2], atol=2e-2, rtol=2e-2)


def test_frozen_weight_gets_no_gradient_and_inference_keeps_nothing():
    hidden, weight, labels = _data(weight_grad=False)
    loss = linear_cross_entropy(hidden, weight, labels, chunk_size=8)
    loss.backward()
    assert weight.grad is None and hidden.grad is not None
    with torch.no_grad():
        torch.testing.assert_close(linear_cross_entropy(hidden, weight, labels), _reference(hidden, weight, labels))


def test_all_rows_ignored_gives_zero_and_zero_grads():
    hidden, weight, labels = _data()
    loss = linear_cross_entropy(hidden, weight, torch.full_like(labels, -100), chunk_size=4)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.count_nonzero(hidden.grad) == 0 and torch.count_nonzero(weight.grad) == 0


def test_bad_arguments_raise():
    hidden, weight, labels = _data()
    with pytest.raises(ValueError, match="chunk_size"):
        linear_cross_entropy(hidden, weight, labels, chunk_size=0)
    with pytest.raises(ValueError, match="labels"):
        linear_cross_entropy(hidden, weight, labels[:-1])
    with pytest.raises(ValueError, match=r"\[v, d\]"):
        linear_cross_entropy(hidden, weight[:, :-1], labels)
    with pytest.raises(ValueError, match="chunk_size"):
        LinearCrossEntropyLoss(chunk_size=0)


def _model_with_output(output):
    model = torch.nn.Module()
    model.output = output
    return model


@pytest.mark.parametrize("chunk_size", [None, 3, 1000])
def test_loss_module_uses_the_fused_path_for_a_plain_linear(chunk_size, monkeypatch):
    import torchtune.modules.loss.cross_entropy_loss as module

    calls = []
    monkeypatch.setattr(module, "linear_cross_entropy", lambda *a, **k: calls.append(k) or linear_cross_entropy(*a, **k))
    linear = torch.nn.Linear(D, V, bias=False)
    loss_fn = LinearCrossEntropyLoss(num_output_chunks=4, chunk_size=chunk_size)
    loss_fn.set_model_output(_model_with_output(linear))
    hidden = torch.randn(2, 9, D)
    labels = torch.randint(0, V, (2, 9))
    labels[0, :3] = -100
    expected = _reference(hidden.reshape(-1, D), linear.weight, labels.reshape(-1), reduction="mean")
    torch.testing.assert_close(loss_fn(hidden, labels), expected)
    # 15 trained tokens: 4 chunks of 4 rows by default, else the given chunk size.
    assert calls == [{"ignore_index": -100, "chunk_size": chunk_size or 4}]


def test_loss_module_falls_back_for_other_projections():
    lora = LoRALinear(D, V, rank=2, alpha=4.0)
    with torch.no_grad():
        lora.lora_b.weight.normal_()
    loss_fn = LinearCrossEntropyLoss(num_output_chunks=3)
    loss_fn.set_model_output(_model_with_output(lora))
    assert loss_fn._fusable_weight() is None
    hidden = torch.randn(2, 7, D, requires_grad=True)
    labels = torch.randint(0, V, (2, 7))
    loss = loss_fn(hidden, labels, reduction="sum")
    expected = F.cross_entropy(lora(hidden).reshape(-1, V), labels.reshape(-1), reduction="sum")
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert lora.lora_b.weight.grad is not None
    biased = torch.nn.Linear(D, V, bias=True)
    loss_fn.set_model_output(_model_with_output(biased))
    assert loss_fn._fusable_weight() is None
