"""Every shipped config is registered with its recipe and passes `tune validate`."""

from pathlib import Path

import pytest

from torchtune import _recipe_registry
from torchtune.config import load_config, validate

CONFIGS_DIR = Path(_recipe_registry.CONFIGS_DIR)
SHIPPED = sorted(str(p.relative_to(CONFIGS_DIR).with_suffix("")) for p in CONFIGS_DIR.rglob("*.yaml"))


def test_every_shipped_config_is_registered():
    registered = {c.name for c in _recipe_registry.get_all_configs()}
    assert SHIPPED and set(SHIPPED) <= registered, set(SHIPPED) - registered


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_config_validates(name):
    validate(load_config(name))
