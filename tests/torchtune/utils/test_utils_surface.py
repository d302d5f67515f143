import logging

import torch

from torchtune.utils import (
    batch_to_device,
    DeviceSupport,
    get_device_support,
    get_torch_device_namespace,
    get_world_size_and_rank,
    log_rank_zero,
    torch_version_ge,
)


def test_device_support_matches_the_machine():
    support = get_device_support()
    assert support is (DeviceSupport.CUDA if torch.cuda.is_available() else support)
    if not torch.cuda.is_available() and support is DeviceSupport.CPU:
        assert get_torch_device_namespace() is torch.cpu
    assert {m.name for m in DeviceSupport} == {"CPU", "CUDA", "NPU", "XPU"}


def test_batch_to_device_moves_nested_tensors_in_place():
    batch = {"tokens": torch.ones(2), "extra": {"mask": torch.zeros(1)}, "pos": [torch.ones(1)], "name": "x"}
    nested = batch["extra"]
    batch_to_device(batch, torch.device("meta"))
    assert batch["tokens"].is_meta and nested["mask"].is_meta and batch["pos"][0].is_meta
    assert batch["extra"] is nested and batch["name"] == "x"


def test_versions_and_ranks(caplog):
    assert torch_version_ge("1.0") and not torch_version_ge("999.0")
    assert get_world_size_and_rank() == (1, 0)
    logger = logging.getLogger("test_log_rank_zero")
    with caplog.at_level(logging.INFO, logger="test_log_rank_zero"):
        log_rank_zero(logger, "once")
    assert "once" in caplog.text
