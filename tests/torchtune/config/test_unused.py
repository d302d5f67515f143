import importlib.util

import pytest
from omegaconf import OmegaConf

from torchtune import config
from torchtune._recipe_registry import get_all_recipes

_FINETUNE = ("full_finetune_single_device", "full_finetune_distributed", "lora_finetune_single_device",
             "lora_finetune_distributed")


def toy_component(a, b=1):
    return a + b


def toy_kwargs_component(a, **kwargs):
    return a


def test_unknown_top_level_key_names_the_closest():
    cfg = OmegaConf.create({"batch_size": 2, "batch_sise": 4})
    assert config.find_unused_keys(cfg, {"batch_size", "epochs"}) == [
        "config key 'batch_sise' is not read by this recipe; did you mean 'batch_size'?"
    ]


def test_a_top_level_key_read_through_interpolation_is_used():
    cfg = OmegaConf.create({"checkpoint_dir": "/tmp/m", "model": {"path": "${checkpoint_dir}"}, "checkpoint_dri": 1})
    assert config.find_unused_keys(cfg, {"model"}) == [
        "config key 'checkpoint_dri' is not read by this recipe"
    ]


def test_unknown_component_argument_names_the_closest():
    cfg = OmegaConf.create({"model": {"_component_": f"{__name__}.toy_component", "a": 1, "bb": 2}})
    (message,) = config.find_unused_keys(cfg, {"model"})
    assert "model.bb" in message and "did you mean 'b'?" in message


def test_component_with_kwargs_and_nested_lists_are_read():
    cfg = OmegaConf.create({
        "model": {"_component_": f"{__name__}.toy_kwargs_component", "a": 1, "anything": 2},
        "dataset": [{"_component_": f"{__name__}.toy_component", "a": 1}, {"_component_": f"{__name__}.toy_component",
                                                                            "c": 3}],
        "checkpointer": {"checkpoint_files": {"filename_format": "x", "max_filename": "1"}},
    })
    messages = config.find_unused_keys(cfg, {"model", "dataset", "checkpointer"})
    assert len(messages) == 1 and "dataset[1].c" in messages[0]


def test_warn_unused_keys_logs():
    import logging

    # A handler of our own: the package logger does not propagate, and its stream handler may
    # hold a stream that an earlier test's capture replaced.
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("torchtune")
    logger.addHandler(handler)
    try:
        messages = config.warn_unused_keys(OmegaConf.create({"epocs": 1}), {"epochs"})
    finally:
        logger.removeHandler(handler)
    assert messages == ["config key 'epocs' is not read by this recipe; did you mean 'epochs'?"]
    assert [(r.levelname, r.getMessage()) for r in records] == [("WARNING", messages[0])]


def _recipe_keys(recipe):
    spec = importlib.util.spec_from_file_location(f"_recipe_{recipe.name}", recipe.path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CONFIG_KEYS


# Keys of configs carried over from upstream for features these recipes do not implement (tensor
# parallelism, low-CPU-RAM loading, FSDP1 options): the warning about them is intended.
_UNIMPLEMENTED_UPSTREAM_KEYS = {"tensor_parallel_dim", "tensor_parallel_plan", "low_cpu_ram", "fsdp"}


@pytest.mark.parametrize("recipe", [r for r in get_all_recipes() if r.name in _FINETUNE], ids=lambda r: r.name)
def test_shipped_configs_have_no_unused_keys(recipe):
    keys = _recipe_keys(recipe)
    assert recipe.configs
    for cfg_file in recipe.configs:
        cfg = OmegaConf.load(cfg_file.path)
        expected = [f"config key '{k}' is not read by this recipe" for k in cfg if k in _UNIMPLEMENTED_UPSTREAM_KEYS]
        assert config.find_unused_keys(cfg, keys) == expected, cfg_file.name
