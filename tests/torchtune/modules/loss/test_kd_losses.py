"""The distillation losses against an independent computation: a Python loop over positions using
``torch.distributions.kl_divergence`` between two ``Categorical`` distributions, averaged over the
positions whose label is not ignored."""

import pytest
import torch
from torch.distributions import Categorical, kl_divergence

from torchtune.modules.loss import (
    ForwardKLLoss,
    ForwardKLWithChunkedOutputLoss,
    ReverseKLLoss,
    ReverseKLWithChunkedOutputLoss,
    SymmetricKLLoss,
    SymmetricKLWithChunkedOutputLoss,
)

IGNORE = -100


def _reference(student, teacher, labels, forward_weight, normalize=True):
    total, count = 0.0, 0
    b, s, _ = student.shape
    for i in range(b):
        for j in range(s):
            if labels[i, j] == IGNORE:
                continue
            p, q = Categorical(logits=teacher[i, j].double()), Categorical(logits=student[i, j].double())
            total += forward_weight * kl_divergence(p, q).item() + (1 - forward_weight) * kl_divergence(q, p).item()
            count += 1
    if not normalize:
        return total
    return total / count if count else 0.0


def _inputs(seed=0, b=2, s=7, v=11):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(b, s, v, generator=g) * 2
    teacher = torch.randn(b, s, v, generator=g) * 2
    labels = torch.randint(0, v, (b, s), generator=g)
    labels[0, :3] = IGNORE  # a prompt
    labels[1, -2:] = IGNORE  # padding
    return student, teacher, labels


CASES = [
    (ForwardKLLoss(), ForwardKLWithChunkedOutputLoss(num_output_chunks=3), 1.0),
    (ReverseKLLoss(), ReverseKLWithChunkedOutputLoss(num_output_chunks=3), 0.0),
    (SymmetricKLLoss(sym_kd_ratio=0.3), SymmetricKLWithChunkedOutputLoss(num_output_chunks=3, sym_kd_ratio=0.3), 0.3),
]


@pytest.mark.parametrize("loss, chunked, forward_weight", CASES, ids=["forward", "reverse", "symmetric"])
def test_losses_equal_the_reference(loss, chunked, forward_weight):
    student, teacher, labels = _inputs()
    expected = _reference(student, teacher, labels, forward_weight)
    torch.testing.assert_close(loss(student, teacher, labels).item(), expected, atol=1e-5, rtol=1e-5)
    # Flattened rows, as torchtune's callers pass them.
    flat = loss(student.reshape(-1, student.shape[-1]), teacher.reshape(-1, teacher.shape[-1]), labels)
    torch.testing.assert_close(flat.item(), expected, atol=1e-5, rtol=1e-5)
    # Chunks of unequal length, as a decoder's set_num_output_chunks produces for s=7.
    s_chunks, t_chunks = list(student.chunk(3, dim=1)), list(teacher.chunk(3, dim=1))
    assert len({c.shape[1] for c in s_chunks}) > 1
    torch.testing.assert_close(chunked(s_chunks, t_chunks, labels).item(), expected, atol=1e-5, rtol=1e-5)
    summed = _reference(student, teacher, labels, forward_weight, normalize=False)
    torch.testing.assert_close(loss(student, teacher, labels, normalize=False).item(), summed, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(chunked(s_chunks, t_chunks, labels, normalize=False).item(), summed,
                               atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("loss, chunked, forward_weight", CASES, ids=["forward", "reverse", "symmetric"])
def test_gradients_equal_the_reference_and_ignored_positions_get_none(loss, chunked, forward_weight):
    student, teacher, labels = _inputs(seed=1)
    ref_student = student.clone().double().requires_grad_()
    p, q = torch.log_softmax(teacher.double(), -1), torch.log_softmax(ref_student, -1)
    per_token = forward_weight * (p.exp() * (p - q)).sum(-1) + (1 - forward_weight) * (q.exp() * (q - p)).sum(-1)
    mask = labels != IGNORE
    (per_token[mask].sum() / mask.sum()).backward()

    for fn, make in ((loss, lambda x: x), (chunked, lambda x: list(x.chunk(3, dim=1)))):
        x = student.clone().requires_grad_()
        fn(make(x), make(teacher), labels).backward()
        torch.testing.assert_close(x.grad, ref_student.grad.float(), atol=1e-6, rtol=1e-5)
        assert x.grad[~mask].abs().max() == 0


def test_all_ignored_gives_zero_and_equal_models_give_zero():
    student, teacher, labels = _inputs()
    for fn in (ForwardKLLoss(), ReverseKLWithChunkedOutputLoss(num_output_chunks=2)):
        args = (student, teacher) if isinstance(fn, ForwardKLLoss) else (list(student.chunk(2, 1)),
                                                                          list(teacher.chunk(2, 1)))
        assert fn(*args, torch.full_like(labels, IGNORE)).item() == 0.0
    assert abs(SymmetricKLLoss()(student, student, labels).item()) < 1e-6


def test_a_vocabulary_mask_shared_by_both_models_gives_finite_values():
    student, teacher, labels = _inputs()
    student[..., -2:] = float("-inf")
    teacher[..., -2:] = float("-inf")
    expected = _reference(student[..., :-2], teacher[..., :-2], labels, 0.5)
    torch.testing.assert_close(SymmetricKLLoss()(student, teacher, labels).item(), expected, atol=1e-5, rtol=1e-5)


def test_bf16_logits_are_upcast():
    student, teacher, labels = _inputs()
    got = ForwardKLWithChunkedOutputLoss(num_output_chunks=2)(
        list(student.bfloat16().chunk(2, 1)), list(teacher.bfloat16().chunk(2, 1)), labels)
    assert got.dtype == torch.float32
    expected = _reference(student.bfloat16().float(), teacher.bfloat16().float(), labels, 1.0)
    torch.testing.assert_close(got.item(), expected, atol=1e-5, rtol=1e-5)


def test_bad_inputs_raise():
    student, teacher, labels = _inputs()
    with pytest.raises(ValueError, match="same shape"):
        ForwardKLLoss()(student, teacher[..., :-1], labels)
    with pytest.raises(ValueError, match="same s_i"):
        ForwardKLWithChunkedOutputLoss()(list(student.chunk(2, 1)), list(teacher.chunk(3, 1)), labels)
    with pytest.raises(ValueError, match="sym_kd_ratio"):
        SymmetricKLLoss(sym_kd_ratio=1.5)
