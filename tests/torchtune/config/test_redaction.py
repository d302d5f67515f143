import logging

import pytest
from omegaconf import OmegaConf

from torchtune.config import is_secret_key, log_config, REDACTED, redact_secrets, redacted_yaml
from torchtune.utils import get_logger

ENV_SECRET = "s3cr3t-from-the-environment-7f2a"
KEY_SECRET = "plain-secret-under-a-token-key-91c"


@pytest.mark.parametrize(
    "key",
    ["token", "hf_token", "HF_TOKEN", "access_token", "hfToken", "api_key", "wandb_api_key", "apiKey", "apikey",
     "key", "secret", "client_secret", "aws_secret_access_key", "password", "db-password", "passwd",
     "credentials", "private_key", "metric_logger.api_key", "authorization"],
)
def test_secret_keys(key):
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key",
    ["max_tokens", "num_tokens", "max_new_tokens", "tokens", "tokenizer", "pad_token", "bos_token", "eos_token",
     "token_file", "max_token_len", "sort_key", "text_key", "keys", "monkey", "passage", "output_dir", "", 3],
)
def test_harmless_keys(key):
    assert not is_secret_key(key)


def _env_config(monkeypatch):
    monkeypatch.setenv("TT_TEST_SECRET", ENV_SECRET)
    return OmegaConf.create(
        {
            "output_dir": "/tmp/run",
            "token": KEY_SECRET,
            "max_tokens": 7,
            "pad_token": "<pad>",
            "hub": {"upload": "${oc.env:TT_TEST_SECRET}"},  # harmless key, value from the environment
            "headers": ["Accept: json", "Bearer ${oc.env:TT_TEST_SECRET}"],  # embedded, inside a list
            "deep": [{"x": {"y": "${oc.env:TT_TEST_SECRET,fallback}"}}],
            "copy": "${hub.upload}",  # a reference to an env value, not oc.env itself
            "quoted": "prefix-${hub.upload}-suffix",
            "log_dir": "${output_dir}/logs",
            "hf_token": None,
        }
    )


def test_redact_secrets_keys_env_values_and_copies(monkeypatch):
    cfg = _env_config(monkeypatch)
    clean = redact_secrets(cfg)
    assert clean == {
        "output_dir": "/tmp/run",
        "token": REDACTED,
        "max_tokens": 7,
        "pad_token": "<pad>",
        "hub": {"upload": REDACTED},
        "headers": ["Accept: json", REDACTED],
        "deep": [{"x": {"y": REDACTED}}],
        "copy": REDACTED,
        "quoted": REDACTED,
        "log_dir": "/tmp/run/logs",  # other interpolations are resolved and kept
        "hf_token": None,  # nothing to hide; "<redacted>" would suggest a value was set
    }
    assert OmegaConf.to_container(cfg, resolve=True)["hub"]["upload"] == ENV_SECRET  # input untouched


def test_short_env_values_are_not_searched_elsewhere(monkeypatch):
    monkeypatch.setenv("TT_TEST_FLAG", "1")
    clean = redact_secrets(OmegaConf.create({"flag": "${oc.env:TT_TEST_FLAG}", "name": "run1"}))
    assert clean == {"flag": REDACTED, "name": "run1"}


def test_hf_token_values_and_secret_subtrees():
    hf = "hf_" + "a1" * 15
    clean = redact_secrets({"notes": [f"use {hf}", "plain"], "credentials": {"user": "me", "pass": "x"}})
    assert clean == {"notes": [REDACTED, "plain"], "credentials": REDACTED}


def test_log_config_prints_no_secret(monkeypatch):
    cfg = _env_config(monkeypatch)
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = get_logger("INFO")
    logger.addHandler(handler)
    monkeypatch.delenv("RANK", raising=False)
    try:
        log_config(recipe_name="TinyRecipe", cfg=cfg)
    finally:
        logger.removeHandler(handler)
    (message,) = [r.getMessage() for r in records]
    assert ENV_SECRET not in message and KEY_SECRET not in message
    assert "max_tokens: 7" in message and "log_dir: /tmp/run/logs" in message
    assert message.endswith(redacted_yaml(cfg))
