import pytest
import torch
import torch.nn.functional as F

from tests.test_utils import TINY_LLAMA
from torchtune.models.llama2 import llama2
from torchtune.modules import TiedLinear
from torchtune.modules.loss import LinearCrossEntropyLoss

V = TINY_LLAMA["vocab_size"]


def _batch():
    tokens = torch.randint(0, V, (2, 24))
    labels = torch.randint(0, V, (2, 24))
    labels[0, :9] = -100
    labels[1, 20:] = -100
    return tokens, labels


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("mask_ignored_tokens", [True, False])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_matches_full_logits_cross_entropy_and_grads(mask_ignored_tokens, reduction):
    model = llama2(**TINY_LLAMA)
    tokens, labels = _batch()
    expected = F.cross_entropy(model(tokens).reshape(-1, V), labels.reshape(-1), reduction=reduction)
    expected.backward()
    expected_grads = _grads(model)
    model.zero_grad()

    loss_fn = LinearCrossEntropyLoss(num_output_chunks=5, mask_ignored_tokens=mask_ignored_tokens)
    loss_fn.set_model_output(model)
    hidden = model(tokens)
    assert hidden.shape == (2, 24, TINY_LLAMA["embed_dim"])
    loss = loss_fn(hidden, labels, reduction=reduction)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    grads = _grads(model)
    assert grads.keys() == expected_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], expected_grads[name], msg=name)
    # The projection stays the model's: the loss owns no parameters of its own.
    assert list(loss_fn.parameters()) == []


def test_tied_output_projection():
    embedding = torch.nn.Embedding(V, 16)
    proj = TiedLinear(embedding)
    hidden = torch.randn(2, 10, 16, requires_grad=True)
    labels = torch.randint(0, V, (2, 10))
    loss_fn = LinearCrossEntropyLoss(num_output_chunks=3)
    model = torch.nn.Module()
    model.output = proj
    loss_fn.set_model_output(model)
    expected = F.cross_entropy(proj(hidden).reshape(-1, V), labels.reshape(-1))
    torch.testing.assert_close(loss_fn(hidden, labels), expected)


def test_bf16_hidden_states_computed_in_fp32():
    linear = torch.nn.Linear(16, V, bias=False).to(torch.bfloat16)
    model = torch.nn.Module()
    model.output = linear
    hidden = torch.randn(2, 10, 16, dtype=torch.bfloat16)
    labels = torch.randint(0, V, (2, 10))
    loss_fn = LinearCrossEntropyLoss(num_output_chunks=4)
    loss_fn.set_model_output(model)
    loss = loss_fn(hidden, labels)
    assert loss.dtype == torch.float32
    expected = F.cross_entropy(linear(hidden).float().reshape(-1, V), labels.reshape(-1))
    torch.testing.assert_close(loss, expected)


def test_all_ignored_and_errors():
    model = llama2(**TINY_LLAMA)
    tokens, labels = _batch()
    loss_fn = LinearCrossEntropyLoss()
    with pytest.raises(RuntimeError, match="set_model_output"):
        loss_fn(torch.randn(2, 24, 64), labels)
    loss_fn.set_model_output(model)
    hidden = model(tokens)
    loss = loss_fn(hidden, torch.full_like(labels, -100))
    assert loss.item() == 0.0
    loss.backward()  # still connected to the graph
    with pytest.raises(ValueError, match="returned logits"):
        loss_fn(torch.randn(2, 24, V), labels)
    with pytest.raises(ValueError, match="list"):
        loss_fn([hidden], labels)
