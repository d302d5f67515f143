import datetime
import fractions
import types

import pytest
import torch
from omegaconf import OmegaConf

from torchtune.config import InstantiationError, instantiate


def test_builds_component_with_node_keys_as_kwargs():
    layer_cfg = {"_component_": "torch.nn.Linear", "in_features": 3, "out_features": 2, "bias": False}
    cfg = OmegaConf.create({"layer": layer_cfg})
    layer = instantiate(cfg.layer)
    assert isinstance(layer, torch.nn.Linear)
    assert layer.weight.shape == (2, 3)
    assert layer.bias is None


def test_positional_args_passed_and_kwargs_override_node():
    model = torch.nn.Linear(2, 2)
    cfg = OmegaConf.create({"optimizer": {"_component_": "torch.optim.SGD", "lr": 0.1, "momentum": 0.9}})
    opt = instantiate(cfg.optimizer, model.parameters(), lr=0.5)
    assert isinstance(opt, torch.optim.SGD)
    assert opt.defaults["lr"] == 0.5
    assert opt.defaults["momentum"] == 0.9
    assert opt.param_groups[0]["params"][0] is model.weight


def test_kwargs_are_passed_as_given():
    marker = {"not": "converted"}
    obj = instantiate({"_component_": "types.SimpleNamespace"}, payload=marker)
    assert obj.payload is marker


def test_nested_components_in_dicts_and_lists_are_built():
    cfg = OmegaConf.create(
        {
            "outer": {
                "_component_": "types.SimpleNamespace",
                "delay": {"_component_": "datetime.timedelta", "hours": 2},
                "items": [{"_component_": "fractions.Fraction", "numerator": 1, "denominator": 3}, 5],
                "plain": {"a": 1},
            }
        }
    )
    obj = instantiate(cfg.outer)
    assert isinstance(obj, types.SimpleNamespace)
    assert obj.delay == datetime.timedelta(hours=2)
    assert obj.items == [fractions.Fraction(1, 3), 5]
    assert obj.plain == {"a": 1} and type(obj.plain) is dict


def test_interpolation_resolves_against_whole_config():
    cfg = OmegaConf.create(
        {
            "output_dir": "/tmp/run",
            "logger": {"_component_": "types.SimpleNamespace", "log_dir": "${output_dir}/logs"},
        }
    )
    assert instantiate(cfg.logger).log_dir == "/tmp/run/logs"


def test_plain_dict_and_none():
    assert instantiate({"_component_": "datetime.timedelta", "days": 1}) == datetime.timedelta(days=1)
    assert instantiate(None) is None


def test_missing_component_names_key():
    cfg = OmegaConf.create({"optimizer": {"lr": 0.1}})
    with pytest.raises(InstantiationError, match=r"config key 'optimizer' has no '_component_' key"):
        instantiate(cfg.optimizer)


def test_list_element_key_in_errors():
    cfg = OmegaConf.create({"datasets": [{"_component_": "fractions.Fraction"}, {"numerator": 1}]})
    with pytest.raises(InstantiationError, match=r"config key 'datasets\[1\]' has no '_component_' key"):
        instantiate(cfg.datasets[1])


def test_not_a_config_node():
    with pytest.raises(InstantiationError, match="expects a config node"):
        instantiate(["torch.optim.SGD"])


def test_attribute_typo_names_key_path_and_closest_name():
    cfg = OmegaConf.create({"optimizer": {"_component_": "torch.optim.Adamw", "lr": 0.1}})
    with pytest.raises(InstantiationError) as info:
        instantiate(cfg.optimizer, [torch.nn.Parameter(torch.zeros(1))])
    msg = str(info.value)
    assert "config key 'optimizer'" in msg
    assert "torch.optim.Adamw" in msg
    assert "did you mean 'AdamW'?" in msg


def test_submodule_typo_suggests_submodule():
    cfg = OmegaConf.create({"model": {"_component_": "torchtune.modls.llama2.llama2"}})
    expected = r"'torchtune' has no attribute 'modls'; did you mean 'models'\?"
    with pytest.raises(InstantiationError, match=expected):
        instantiate(cfg.model)


def test_top_level_module_typo():
    cfg = OmegaConf.create({"optimizer": {"_component_": "trch.optim.SGD"}})
    with pytest.raises(InstantiationError, match=r"no module named 'trch'; did you mean 'torch'\?"):
        instantiate(cfg.optimizer)


def test_malformed_path():
    for bad in ["torch..optim", "", 3]:
        with pytest.raises(InstantiationError, match="must be a dotted import path"):
            instantiate({"_component_": bad})


def test_module_that_fails_to_import_reports_the_real_cause(tmp_path, monkeypatch):
    (tmp_path / "broken_component_mod.py").write_text("import not_a_real_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(InstantiationError) as info:
        instantiate({"_component_": "broken_component_mod.build"})
    msg = str(info.value)
    assert "importing 'broken_component_mod'" in msg
    assert "not_a_real_dependency_xyz" in msg


def test_non_callable_target():
    with pytest.raises(InstantiationError, match="'math.pi' is a float, not a class or function"):
        instantiate({"_component_": "math.pi"})


def test_unknown_argument_names_key_path_and_closest_name():
    cfg = OmegaConf.create({"optimizer": {"_component_": "torch.optim.SGD", "lrr": 0.1}})
    with pytest.raises(InstantiationError) as info:
        instantiate(cfg.optimizer, [torch.nn.Parameter(torch.zeros(1))])
    msg = str(info.value)
    assert "config key 'optimizer.lrr'" in msg
    assert "not an argument of torch.optim.SGD" in msg
    assert "did you mean 'lr'?" in msg


def test_unknown_argument_in_nested_node_names_full_key():
    cfg = OmegaConf.create(
        {
            "outer": {
                "_component_": "types.SimpleNamespace",
                "inner": {"_component_": "fractions.Fraction", "denominater": 1},
            }
        }
    )
    expected = r"config key 'outer.inner.denominater'.*did you mean 'denominator'\?"
    with pytest.raises(InstantiationError, match=expected):
        instantiate(cfg.outer)


def test_unknown_kwarg_given_to_instantiate():
    expected = "'biass' is not an argument of torch.nn.Linear; did you mean 'bias'"
    with pytest.raises(InstantiationError, match=expected):
        instantiate({"_component_": "torch.nn.Linear", "in_features": 2, "out_features": 2}, biass=False)


def test_missing_required_argument():
    cfg = OmegaConf.create({"layer": {"_component_": "torch.nn.Linear", "in_features": 2}})
    expected = r"config key 'layer': cannot call torch.nn.Linear: .*out_features"
    with pytest.raises(InstantiationError, match=expected):
        instantiate(cfg.layer)


def test_error_inside_component_keeps_type_and_names_node():
    cfg = OmegaConf.create({"frac": {"_component_": "fractions.Fraction", "numerator": 1, "denominator": 0}})
    with pytest.raises(ZeroDivisionError) as info:
        instantiate(cfg.frac)
    assert any("config key 'frac'" in note for note in getattr(info.value, "__notes__", []))


def test_bad_interpolation_names_key():
    logger = {"_component_": "types.SimpleNamespace", "log_dir": "${missing_key}/logs"}
    cfg = OmegaConf.create({"logger": logger})
    with pytest.raises(InstantiationError, match="config key 'logger': cannot resolve"):
        instantiate(cfg.logger)
