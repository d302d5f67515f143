import torch.distributed as dist

from torchtune.training import get_world_size_and_rank, is_distributed

_ENV = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE")


def test_single_process_defaults(monkeypatch):
    for key in _ENV:
        monkeypatch.delenv(key, raising=False)
    assert get_world_size_and_rank() == (1, 0)
    assert not is_distributed()


def test_launcher_environment(monkeypatch):
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert is_distributed()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not is_distributed()


def test_initialised_single_rank_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        assert get_world_size_and_rank() == (1, 0)
        assert not is_distributed()
    finally:
        dist.destroy_process_group()
