import copy
import io
import math

import pytest
import torch

from torchtune.training import (
    create_optim_in_bwd_wrapper,
    get_cosine_schedule_with_warmup,
    get_lr,
    register_optim_in_bwd_hooks,
)


def _lrs(factory, steps, **kwargs):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = factory(opt, **kwargs)
    values = []
    for _ in range(steps):
        values.append(get_lr(opt))
        opt.step()
        sched.step()
    return values


# Hand-derived from the definition (base lr 0.1, warmup 4, 20 steps): warmup t/4, then
# 0.5 * (1 + cos(2 pi c p)) with p = (t - 4) / 16.
HALF = 0.5 * (1 - math.sqrt(0.5))  # 0.5 * (1 + cos(3 pi / 4))


@pytest.mark.parametrize(
    "num_cycles, expected",
    [
        (0.5, {0: 0.0, 2: 0.05, 4: 0.1, 8: 0.1 * (0.5 * (1 + math.sqrt(0.5))), 12: 0.05, 20: 0.0}),
        (1.5, {4: 0.1, 8: 0.1 * HALF, 12: 0.05, 16: 0.1 * (1 - HALF), 20: 0.0}),
    ],
)
def test_cosine_schedule_values(num_cycles, expected):
    lrs = _lrs(get_cosine_schedule_with_warmup, 21, num_warmup_steps=4, num_training_steps=20, num_cycles=num_cycles)
    assert {t: lrs[t] for t in expected} == pytest.approx(expected, abs=1e-12)


def test_resume_with_last_epoch():
    fresh = _lrs(get_cosine_schedule_with_warmup, 10, num_warmup_steps=2, num_training_steps=10)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    for group in opt.param_groups:
        group["initial_lr"] = 0.1  # what a resumed optimizer state carries
    get_cosine_schedule_with_warmup(opt, 2, 10, last_epoch=5)
    assert get_lr(opt) == pytest.approx(fresh[6])
    with pytest.raises(ValueError, match="non-negative"):
        get_cosine_schedule_with_warmup(opt, -1, 10)


def test_get_lr_rejects_mixed_groups():
    opt = torch.optim.SGD(
        [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.1},
         {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.2}],
        lr=0.1,
    )
    with pytest.raises(RuntimeError, match="different learning rates"):
        get_lr(opt)


def test_scheduler_drives_every_optimizer_in_backward():
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 1))
    reference = copy.deepcopy(model)
    optim_dict = {p: torch.optim.SGD([p], lr=1.0) for p in model.parameters()}
    register_optim_in_bwd_hooks(model, optim_dict)
    wrapper = create_optim_in_bwd_wrapper(model, optim_dict)
    driver = next(iter(optim_dict.values()))
    scheduler = get_cosine_schedule_with_warmup(driver, num_warmup_steps=2, num_training_steps=4)
    wrapper.set_lr_scheduler(scheduler)
    x = torch.ones(2, 3)

    before = [p.detach().clone() for p in model.parameters()]
    model(x).sum().backward()  # warmup step 0: lr 0 everywhere, nothing moves
    assert all(torch.equal(b, p) for b, p in zip(before, model.parameters()))
    scheduler.step()  # lr 0.5 from now on
    assert get_lr(wrapper) == pytest.approx(0.5)

    model(x).sum().backward()
    reference(x).sum().backward()
    for p, ref in zip(model.parameters(), reference.parameters()):
        assert p.grad is None  # freed by the hook right after the step
        torch.testing.assert_close(p.detach(), ref.detach() - 0.5 * ref.grad)
    assert all(opt.param_groups[0]["lr"] == pytest.approx(0.5) for opt in optim_dict.values())
    torch.save(scheduler.state_dict(), io.BytesIO())  # nothing unpicklable was added to the scheduler


def test_optimizer_in_backward_wrapper_steps_and_reports_the_schedule():
    model = torch.nn.Linear(2, 1)
    optim_dict = {p: torch.optim.SGD([p], lr=1.0) for p in model.parameters()}
    wrapper = create_optim_in_bwd_wrapper(model, optim_dict)
    with pytest.raises(RuntimeError, match="set_lr_scheduler"):
        wrapper.step_lr_scheduler()
    with pytest.raises(RuntimeError, match="set_lr_scheduler"):
        wrapper.get_last_lr()
    driver = next(iter(optim_dict.values()))
    wrapper.set_lr_scheduler(get_cosine_schedule_with_warmup(driver, num_warmup_steps=4, num_training_steps=8))
    assert wrapper.get_last_lr() == 0.0
    wrapper.step_lr_scheduler()
    wrapper.step_lr_scheduler()
    assert wrapper.get_last_lr() == pytest.approx(0.5)  # linear warmup: 2 of 4 steps
    assert get_lr(wrapper) == pytest.approx(0.5)
