import pytest
import torch
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


def test_backend_follows_the_device():
    from torchtune.training import get_distributed_backend

    assert get_distributed_backend("cuda") == "nccl"
    assert get_distributed_backend("cpu") == "gloo"
    assert get_distributed_backend("cuda", offload_ops_to_cpu=True) == "cuda:nccl,cpu:gloo"
    assert get_distributed_backend("cpu", offload_ops_to_cpu=True) == "gloo"
    with pytest.raises(ValueError, match="'tpu'"):
        get_distributed_backend("tpu")


def test_init_without_launcher_makes_a_one_process_group(monkeypatch):
    from torchtune.training import broadcast_object, init_distributed, record_rank_errors

    for key in _ENV:
        monkeypatch.delenv(key, raising=False)
    with record_rank_errors():
        assert init_distributed(backend="gloo", timeout=30)
        assert get_world_size_and_rank() == (1, 0)
        assert broadcast_object({"a": 1}) == {"a": 1}
        with pytest.raises(RuntimeError, match="already initialised"):
            init_distributed(backend="gloo")
    assert not dist.is_initialized()  # torn down on success


def test_errors_are_reported_once_and_exit_with_status_1(monkeypatch, capsys):
    from torchtune.training import init_distributed, record_rank_errors

    for key in _ENV:
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(SystemExit) as exit_info:
        with record_rank_errors():
            init_distributed(backend="gloo")
            message = "checkpoint shard not found: " + "model-2.safetensors"  # not on the traceback's source line
            raise FileNotFoundError(message)
    assert exit_info.value.code == 1
    assert not dist.is_initialized()
    err = capsys.readouterr().err
    # A missing file is an anticipated failure: one line, no traceback (TUNE_DEBUG=1 adds it).
    assert err.count("checkpoint shard not found: model-2.safetensors") == 1 and "Traceback" not in err
    assert err.startswith("[rank0] error: checkpoint shard not found"), err

    # Anything else is a bug: its traceback is shown.
    with pytest.raises(SystemExit):
        with record_rank_errors():
            init_distributed(backend="gloo")
            raise RuntimeError("index " + "out of range")
    err = capsys.readouterr().err
    assert err.count("RuntimeError: index out of range") == 1 and "Traceback" in err

    # Before the process group exists, only the first process of each machine reports.
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(SystemExit):
        with record_rank_errors():
            raise ValueError("bad config value")
    assert "bad config value" not in capsys.readouterr().err


def test_threads_are_shared_between_local_ranks(monkeypatch):
    from torchtune.training import set_torch_num_threads

    before = torch.get_num_threads()
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "64")  # more ranks than cores: at least one thread each
    try:
        set_torch_num_threads()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
