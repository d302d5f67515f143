"""Every shipped config is registered with its recipe, passes `tune validate`, and its model builds."""

import inspect
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from torchtune import _recipe_registry, config
from torchtune.config import load_config, validate
from torchtune.config._component import get_component_from_path

CONFIGS_DIR = Path(_recipe_registry.CONFIGS_DIR)
SHIPPED = sorted(str(p.relative_to(CONFIGS_DIR).with_suffix("")) for p in CONFIGS_DIR.rglob("*.yaml"))


def test_every_shipped_config_is_registered():
    registered = {c.name for c in _recipe_registry.get_all_configs()}
    assert SHIPPED and set(SHIPPED) <= registered, set(SHIPPED) - registered


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_config_validates(name):
    validate(load_config(name))


# Building on the meta device allocates no memory, so even a 405B model builds in about a second. The exception is a
# builder that quantizes the frozen base weights to NF4 while building (QLoRA, QDoRA): torchao's quantization runs
# about 150 ops per weight, and on meta each goes through a Python meta kernel, so it costs about 1.3 s (idle) to 5 s
# (busy 2-core machine) per billion parameters: 20 s or more for 7B-13B, minutes for 70B and 405B. One quantized
# config, the smallest, is built fully; for the other quantized ones the builder resolves and the config's
# arguments bind to its signature (names, and no required argument left out).
QUANTIZED_BUILT_FULLY = "llama3_2/1B_qlora_single_device"


def _is_quantized(model_cfg) -> bool:
    return model_cfg._component_.rsplit(".", 1)[-1].startswith("qlora_") or bool(model_cfg.get("quantize_base"))


def _distinct_models():
    """Shipped configs grouped by identical ``model`` sections (each distinct model is built once)."""
    groups = {}
    for name in SHIPPED:
        cfg = load_config(name)
        if "model" in cfg:
            groups.setdefault(OmegaConf.to_yaml(cfg.model, resolve=True), []).append(name)
    return list(groups.values())


MODEL_GROUPS = _distinct_models()


def test_the_fully_built_quantized_config_is_shipped_and_quantized():
    assert _is_quantized(load_config(QUANTIZED_BUILT_FULLY).model)


@pytest.mark.parametrize("names", MODEL_GROUPS, ids=[names[0] for names in MODEL_GROUPS])
def test_shipped_config_model_builds_on_meta(names):
    model_cfg = load_config(names[0]).model
    # hf_decoder reads the dimensions from the downloaded checkpoint's config.json, which the config's
    # placeholder folder does not hold (tests/torchtune/models/hf_decoder build it from real ones).
    reads_checkpoint = "path" in inspect.signature(get_component_from_path(model_cfg._component_, "model")).parameters
    if reads_checkpoint or (_is_quantized(model_cfg) and QUANTIZED_BUILT_FULLY not in names):
        builder = get_component_from_path(model_cfg._component_, "model")
        kwargs = OmegaConf.to_container(model_cfg, resolve=True)
        kwargs.pop("_component_")
        inspect.signature(builder).bind(**kwargs)
        return
    with torch.device("meta"):
        model = config.instantiate(model_cfg)
    params = list(model.parameters())
    assert params and all(p.is_meta for p in params)
