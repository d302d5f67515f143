import sys
import types

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from torchtune.training.metric_logging import (
    DiskLogger,
    redact_secrets,
    StdoutLogger,
    TensorBoardLogger,
    WandBLogger,
)

SECRET = "hf_abcdefghijklmnopqrstuvwxyz0123"
CONFIG = OmegaConf.create(
    {
        "output_dir": "/tmp/run",
        "hf_token": SECRET,
        "tokenizer": {"path": "${output_dir}/tokenizer.model", "max_seq_len": 512},
        "metric_logger": {"api_key": "k-123", "log_dir": "${output_dir}/logs"},
        "special": {"pad_token": "<pad>", "max_tokens": 7},
        "notes": [f"token is {SECRET}", "plain"],
        "password": "hunter2",
    }
)


def test_redact_secrets_by_key_and_by_value():
    clean = redact_secrets(CONFIG)
    assert clean["hf_token"] == clean["metric_logger"]["api_key"] == clean["password"] == "<redacted>"
    assert clean["notes"] == ["<redacted>", "plain"]
    assert clean["tokenizer"] == {"path": "/tmp/run/tokenizer.model", "max_seq_len": 512}  # resolved, kept
    assert clean["special"] == {"pad_token": "<pad>", "max_tokens": 7}
    assert CONFIG.hf_token == SECRET  # the input is untouched


def test_disk_logger_lines_and_config(tmp_path):
    logger = DiskLogger(log_dir=str(tmp_path / "logs"))
    path = logger.path_to_log_file()
    assert path.parent == tmp_path / "logs" and path.name.startswith("log_") and path.suffix == ".txt"
    logger.log("loss", torch.tensor(1.5), step=1)
    assert path.read_text() == "Step 1 | loss:1.5\n"  # flushed immediately
    logger.log_dict({"loss": 1.25, "lr": 2e-05}, step=2)
    logger.log_config(CONFIG)
    logger.close()
    assert path.read_text().splitlines() == ["Step 1 | loss:1.5", "Step 2 | loss:1.25 lr:2e-05"]
    saved = (path.parent / (path.stem + "_config.yaml")).read_text()
    assert SECRET not in saved and "k-123" not in saved and yaml.safe_load(saved)["hf_token"] == "<redacted>"


def test_disk_logger_filename(tmp_path):
    logger = DiskLogger(log_dir=str(tmp_path), filename="metrics.txt")
    logger.log("a", 1, step=0)
    logger.close()
    assert (tmp_path / "metrics.txt").read_text() == "Step 0 | a:1\n"


def test_stdout_logger(capsys):
    logger = StdoutLogger()
    logger.log_dict({"loss": 0.5, "tokens_per_second_per_gpu": 100}, step=3)
    logger.log("val_loss", 0.25, step=3)
    logger.log_config(CONFIG)
    logger.close()
    out = capsys.readouterr().out
    assert "Step 3 | loss:0.5 tokens_per_second_per_gpu:100\nStep 3 | val_loss:0.25\n" in out
    assert SECRET not in out and "max_seq_len: 512" in out


def test_tensorboard_logger_writes_events(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = TensorBoardLogger(log_dir=str(tmp_path))
    logger.log("loss", torch.tensor(2.0), step=1)
    logger.log_dict({"loss": 1.0, "lr": 0.1}, step=2)
    logger.log_config(CONFIG)
    logger.close()
    (run_dir,) = list(tmp_path.iterdir())
    assert run_dir.name.startswith("run_0_")
    events = EventAccumulator(str(run_dir))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(1, 2.0), (2, 1.0)]
    text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert SECRET not in text and "max_seq_len: 512" in text


def test_wandb_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # makes `import wandb` fail
    with pytest.raises(ImportError, match="pip install wandb"):
        WandBLogger(project="p")


class _FakeRun:
    def __init__(self, **init_kwargs):
        self.init_kwargs, self.logged, self.metrics, self.finished = init_kwargs, [], [], False
        self.config = types.SimpleNamespace(updates=[])
        self.config.update = lambda values, allow_val_change: self.config.updates.append(values)

    def define_metric(self, name, **kwargs):
        self.metrics.append((name, kwargs))

    def log(self, payload):
        self.logged.append(payload)

    def finish(self):
        self.finished = True


def test_wandb_logger_calls(monkeypatch):
    fake = types.ModuleType("wandb")
    fake.run = None
    fake.init = lambda **kwargs: _FakeRun(**kwargs)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    logger = WandBLogger(project="p", entity="e", group="g", log_dir="/tmp/w", name="run1")
    run = logger._run
    assert run.init_kwargs == {"project": "p", "entity": "e", "group": "g", "dir": "/tmp/w", "name": "run1"}
    assert ("*", {"step_metric": "global_step", "step_sync": True}) in run.metrics
    logger.log("loss", torch.tensor(1.5), step=4)
    logger.log_dict({"lr": 0.1}, step=5)
    logger.log_config(CONFIG)
    logger.close()
    assert run.logged == [{"loss": 1.5, "global_step": 4}, {"lr": 0.1, "global_step": 5}]
    assert run.config.updates[0]["hf_token"] == "<redacted>" and run.finished


ENV_SECRET = "env-secret-value-5d8e1b"
TOKEN_SECRET = "token-key-secret-3c7f0a"


def _secret_config(monkeypatch):
    monkeypatch.setenv("TT_LOGGER_SECRET", ENV_SECRET)
    return OmegaConf.create(
        {
            "output_dir": "/tmp/run",
            "token": TOKEN_SECRET,
            "max_tokens": 7,
            "checkpointer": {"hub_auth": "${oc.env:TT_LOGGER_SECRET}"},
            "callbacks": [{"header": "Bearer ${oc.env:TT_LOGGER_SECRET}"}],
        }
    )


def _assert_no_secret(data):
    for secret in (ENV_SECRET, TOKEN_SECRET):
        assert secret.encode() not in data


def test_no_logger_writes_a_secret(monkeypatch, tmp_path, capsys):
    """Every logger's log_config, given a token key and an env secret: no output or file holds either."""
    cfg = _secret_config(monkeypatch)
    disk = DiskLogger(log_dir=str(tmp_path / "disk"))
    disk.log_config(cfg)
    disk.close()
    stdout = StdoutLogger()
    stdout.log_config(cfg)
    stdout.close()
    tensorboard = TensorBoardLogger(log_dir=str(tmp_path / "tb"))
    tensorboard.log_config(cfg)
    tensorboard.close()
    fake = types.ModuleType("wandb")
    fake.run = None
    fake.init = lambda **kwargs: _FakeRun(**kwargs)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    wandb = WandBLogger(project="p")
    run = wandb._run
    wandb.log_config(cfg)
    wandb.close()

    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name.endswith("_config.yaml") for p in files) and any("tfevents" in p.name for p in files)
    for path in files:
        _assert_no_secret(path.read_bytes())
    captured = capsys.readouterr()
    _assert_no_secret((captured.out + captured.err).encode())
    assert "max_tokens: 7" in captured.out
    _assert_no_secret(repr(run.config.updates).encode())
    assert run.config.updates == [redact_secrets(cfg)] and run.config.updates[0]["token"] == "<redacted>"
