import pytest
import torch
import torch.nn.functional as F

from tests.test_utils import TINY_LLAMA
from torchtune.models.llama2 import llama2
from torchtune.modules.loss import CEWithChunkedOutputLoss
from torchtune.training import (
    check_loss_finite,
    count_trained_tokens,
    GradientAccumulator,
    NonFiniteLossError,
    scale_grads,
    shift_labels,
)

V = TINY_LLAMA["vocab_size"]


def test_shift_labels_and_count():
    labels = torch.tensor([[-100, -100, 5, 6, 7], [1, 2, 3, -100, -100]])
    shifted = shift_labels(labels)
    assert shifted.tolist() == [[-100, 5, 6, 7, -100], [2, 3, -100, -100, -100]]
    assert count_trained_tokens(shifted).item() == 5
    assert shift_labels(labels, ignore_index=0)[:, -1].tolist() == [0, 0]
    with pytest.raises(ValueError, match="batch_size, seq_len"):
        shift_labels(labels[0])


def test_scale_grads_groups_dtypes_and_skips_missing():
    a = torch.nn.Parameter(torch.ones(3))
    b = torch.nn.Parameter(torch.ones(2, dtype=torch.bfloat16))
    c = torch.nn.Parameter(torch.ones(2))
    a.grad, b.grad = torch.full((3,), 4.0), torch.full((2,), 4.0, dtype=torch.bfloat16)
    scale_grads([a, b, c], torch.tensor(0.25))
    assert a.grad.tolist() == [1.0] * 3 and b.grad.tolist() == [1.0] * 2 and c.grad is None
    scale_grads([a], 2.0)
    assert a.grad.tolist() == [2.0] * 3


def test_scale_grads_takes_a_model_like_upstream():
    model = torch.nn.Linear(2, 2)
    model(torch.ones(1, 2)).sum().backward()
    expected = [p.grad.clone() * 0.5 for p in model.parameters()]
    scale_grads(model, torch.tensor(0.5))
    for p, e in zip(model.parameters(), expected):
        torch.testing.assert_close(p.grad, e)


def _batch_of_four():
    """Four sequences with very different numbers of trained tokens."""
    tokens = torch.randint(0, V, (4, 16))
    labels = tokens.clone()
    labels[0, :13] = -100  # 3 trained tokens after shifting
    labels[1, :2] = -100  # 14
    labels[2, :14] = -100  # 2
    labels[3, 10:] = -100  # 9
    return tokens, labels


def _grads(model):
    return [p.grad.clone() for p in model.parameters()]


def test_two_by_two_accumulation_equals_batch_of_four():
    torch.manual_seed(0)
    model = llama2(**TINY_LLAMA)
    tokens, labels = _batch_of_four()

    # Reference: one batch of 4, PyTorch's mean cross-entropy over all trained tokens.
    shifted = torch.cat([labels[:, 1:], torch.full((4, 1), -100)], dim=1)
    F.cross_entropy(model(tokens).reshape(-1, V), shifted.reshape(-1)).backward()
    expected, expected_loss = _grads(model), F.cross_entropy(model(tokens).reshape(-1, V), shifted.reshape(-1))
    model.zero_grad()

    loss_fn = CEWithChunkedOutputLoss(num_output_chunks=4)
    model.set_num_output_chunks(loss_fn.num_output_chunks)
    acc = GradientAccumulator(gradient_accumulation_steps=2)
    done = []
    for rows in (slice(0, 2), slice(2, 4)):
        micro_labels = shift_labels(labels[rows], loss_fn.ignore_index)
        loss = loss_fn(model(tokens[rows]), micro_labels, reduction="sum")
        loss.backward()
        done.append(acc.micro_step(loss.detach(), count_trained_tokens(micro_labels)))
    assert done == [False, True]
    mean_loss, num_tokens = acc.finish(model.parameters())
    assert num_tokens == 3 + 14 + 2 + 9
    assert mean_loss == pytest.approx(expected_loss.item(), rel=1e-5)
    for got, want in zip(_grads(model), expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_mean_of_micro_batch_means_would_differ():
    """Guards the test above: with these token counts the naive rule gives other gradients."""
    torch.manual_seed(0)
    model = llama2(**TINY_LLAMA)
    tokens, labels = _batch_of_four()
    shifted = shift_labels(labels)
    F.cross_entropy(model(tokens).reshape(-1, V), shifted.reshape(-1)).backward()
    expected = _grads(model)
    model.zero_grad()
    for rows in (slice(0, 2), slice(2, 4)):
        (F.cross_entropy(model(tokens[rows]).reshape(-1, V), shifted[rows].reshape(-1)) / 2).backward()
    assert not all(torch.allclose(g, e, rtol=1e-3) for g, e in zip(_grads(model), expected))


def test_accumulator_resets_and_validates():
    acc = GradientAccumulator(1)
    assert acc.micro_step(torch.tensor(6.0), torch.tensor(3))
    assert acc.finish([]) == (2.0, 3)
    assert acc.micro_step(torch.tensor(0.0), torch.tensor(0))
    assert acc.finish([]) == (0.0, 0)  # a window without trained tokens
    with pytest.raises(RuntimeError, match="before any micro_step"):
        acc.finish([])
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        GradientAccumulator(0)


def test_check_loss_finite_names_the_step():
    check_loss_finite(torch.tensor(1.5), step=3)
    check_loss_finite(2.0, step=3)
    with pytest.raises(NonFiniteLossError, match="step 7"):
        check_loss_finite(torch.tensor(float("nan")), step=7)
    with pytest.raises(NonFiniteLossError, match="inf"):
        check_loss_finite(float("inf"), step=8)


def test_non_finite_loss_is_reported_on_one_line(capsys, monkeypatch):
    """``tune run`` (``config.parse``) prints anticipated errors as one line: a NaN loss is one."""
    from torchtune._errors import anticipated_error_types, DEBUG_ENV, report_anticipated

    monkeypatch.delenv(DEBUG_ENV, raising=False)
    with pytest.raises(NonFiniteLossError) as err:
        check_loss_finite(torch.tensor(float("nan")), step=7)
    assert isinstance(err.value, anticipated_error_types())
    assert isinstance(err.value, RuntimeError)  # what callers caught before
    report_anticipated(err.value)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "step 7" in lines[0] and "learning rate" in lines[0], lines


def test_data_parallel_ranks_normalise_by_global_tokens(monkeypatch):
    """Two simulated ranks (rank 0 with 1 trained token, rank 1 with 3) equal one batch of both."""
    import torchtune.training._grad_accumulation as ga

    inputs = torch.randn(2, 3, 4)
    targets = torch.tensor([[1, -100, -100], [2, 3, 4]])
    losses, grads = [], []
    for rank in range(2):
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 5)
        loss = F.cross_entropy(model(inputs[rank]), targets[rank], reduction="sum")
        loss.backward()
        losses.append(loss.detach())
        grads.append([p.grad for p in model.parameters()])
    ddp_mean = [(g0 + g1) / 2 for g0, g1 in zip(*grads)]  # what DDP/FSDP leave in .grad

    for rank in range(2):
        other = 1 - rank
        pending = [losses[other], count_trained_tokens(targets[other])]

        def all_reduce(tensor):  # the sum over ranks, in the order finish() reduces
            tensor += pending.pop(0).to(tensor.dtype)

        monkeypatch.setattr(ga, "get_world_size_and_rank", lambda: (2, rank))
        monkeypatch.setattr(ga.dist, "all_reduce", all_reduce)
        params = [torch.nn.Parameter(torch.zeros_like(g)) for g in ddp_mean]
        for p, g in zip(params, ddp_mean):
            p.grad = g.clone()
        acc = GradientAccumulator(1)
        acc.micro_step(losses[rank], count_trained_tokens(targets[rank]))
        mean_loss, num_tokens = acc.finish(params)
        assert not pending

        torch.manual_seed(0)
        reference = torch.nn.Linear(4, 5)
        expected = F.cross_entropy(reference(inputs.reshape(-1, 4)), targets.reshape(-1))
        expected.backward()
        assert num_tokens == 4
        assert mean_loss == pytest.approx(expected.item(), rel=1e-6)
        for p, want in zip(params, reference.parameters()):
            torch.testing.assert_close(p.grad, want.grad)
