import logging

import yaml
from omegaconf import OmegaConf

from torchtune.config import log_config
from torchtune.utils import get_logger


def _capture(monkeypatch, rank):
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = get_logger("INFO")
    logger.addHandler(handler)
    if rank is None:
        monkeypatch.delenv("RANK", raising=False)
    else:
        monkeypatch.setenv("RANK", rank)
    cfg = OmegaConf.create({"output_dir": "/tmp/run", "logger": {"log_dir": "${output_dir}/logs"}, "lr": 0.1})
    try:
        log_config(recipe_name="TinyRecipe", cfg=cfg)
    finally:
        logger.removeHandler(handler)
    return [r.getMessage() for r in records]


def test_logs_resolved_config(monkeypatch):
    messages = _capture(monkeypatch, rank=None)
    assert len(messages) == 1
    header, _, body = messages[0].partition("\n\n")
    assert "TinyRecipe" in header
    expected = {"output_dir": "/tmp/run", "logger": {"log_dir": "/tmp/run/logs"}, "lr": 0.1}
    assert yaml.safe_load(body) == expected


def test_only_rank_zero_logs(monkeypatch):
    assert len(_capture(monkeypatch, rank="0")) == 1
    assert _capture(monkeypatch, rank="1") == []
