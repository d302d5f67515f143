import logging
import resource

import pytest
import torch

from torchtune.training import (
    cleanup_before_training,
    create_optim_in_bwd_wrapper,
    get_memory_stats,
    log_memory_stats,
    OptimizerInBackwardWrapper,
    register_optim_in_bwd_hooks,
)


def test_cpu_stats_report_peak_rss():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    stats = get_memory_stats(torch.device("cpu"))
    assert set(stats) == {"peak_memory_rss"}
    assert stats["peak_memory_rss"] >= before / 1024**2 > 0
    assert get_memory_stats("cpu", reset_stats=False) == pytest.approx(stats, rel=0.5)


@pytest.mark.parametrize("device", ["meta", "cuda", "mps"])
def test_unavailable_or_unusual_devices_never_fail(device):
    stats = get_memory_stats(device)
    assert stats and all(v >= 0 for v in stats.values())


@pytest.mark.gpu
def test_cuda_stats_see_an_allocation():
    get_memory_stats("cuda")  # resets the peaks
    x = torch.empty(256 * 1024**2, dtype=torch.uint8, device="cuda")
    stats = get_memory_stats("cuda")
    assert stats["peak_memory_alloc"] >= 0.25 and stats["peak_memory_reserved"] >= stats["peak_memory_alloc"]
    del x


def test_log_memory_stats(caplog):
    logger = logging.getLogger("torchtune")
    logger.propagate = True  # let caplog see the package logger
    try:
        with caplog.at_level(logging.INFO, logger="torchtune"):
            log_memory_stats({"peak_memory_rss": 1.5})
    finally:
        logger.propagate = False
    assert "Memory stats after model init" in caplog.text and "peak memory rss: 1.50 GiB" in caplog.text


def test_cleanup_before_training_runs():
    cleanup_before_training()


def _model_and_optimizers():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    model[0].bias.requires_grad_(False)
    optim_dict = {p: torch.optim.AdamW([p], lr=0.1) for p in model.parameters() if p.requires_grad}
    return model, optim_dict


def test_optimizer_in_backward_equals_a_normal_step():
    model, optim_dict = _model_and_optimizers()
    reference, _ = _model_and_optimizers()
    ref_opt = torch.optim.AdamW([p for p in reference.parameters() if p.requires_grad], lr=0.1)
    register_optim_in_bwd_hooks(model, optim_dict)
    x = torch.randn(3, 4)
    for _ in range(2):
        model(x).square().sum().backward()
        reference(x).square().sum().backward()
        ref_opt.step()
        ref_opt.zero_grad()
    for p, ref in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, ref)
        assert p.grad is None


def test_wrapper_state_dict_round_trip_and_mismatch():
    model, optim_dict = _model_and_optimizers()
    register_optim_in_bwd_hooks(model, optim_dict)
    wrapper = create_optim_in_bwd_wrapper(model, optim_dict)
    assert isinstance(wrapper, OptimizerInBackwardWrapper)
    assert set(wrapper.state_dict()) == {"0.weight", "1.weight", "1.bias"}  # frozen 0.bias has none
    model(torch.randn(3, 4)).sum().backward()
    saved = wrapper.state_dict()
    assert wrapper.get_optim_key("lr") == 0.1

    fresh_model, fresh_dict = _model_and_optimizers()
    fresh = create_optim_in_bwd_wrapper(fresh_model, fresh_dict)
    fresh.load_state_dict(saved)
    exp_avg = fresh_dict[fresh_model[1].weight].state_dict()["state"][0]["exp_avg"]
    torch.testing.assert_close(exp_avg, saved["1.weight"]["state"][0]["exp_avg"])
    with pytest.raises(ValueError, match=r"missing \['1.bias'\]"):
        fresh.load_state_dict({k: v for k, v in saved.items() if k != "1.bias"})


def test_hooks_refuse_a_trainable_param_without_optimizer():
    model, optim_dict = _model_and_optimizers()
    del optim_dict[model[1].bias]
    with pytest.raises(ValueError, match="'1.bias' has no optimizer"):
        register_optim_in_bwd_hooks(model, optim_dict)
