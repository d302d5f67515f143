import pytest
import yaml

from torchtune import _recipe_registry
from torchtune.config import ConfigError, find_config_file, load_config


def _first_builtin() -> _recipe_registry.Config:
    builtins = _recipe_registry.get_all_configs()
    assert builtins, "at least one built-in config must be installed"
    return builtins[0]


def test_builtin_name_with_and_without_suffix():
    builtin = _first_builtin()
    assert find_config_file(builtin.name) == builtin.path
    assert find_config_file(builtin.name + ".yaml") == builtin.path
    # Same keys as an independent YAML parser reads (PyYAML types 3e-4 differently, so no values).
    assert list(load_config(builtin.name).keys()) == list(yaml.safe_load(builtin.path.read_text()).keys())


def test_existing_path_wins_over_builtin_name(tmp_path, monkeypatch):
    builtin = _first_builtin()
    local = tmp_path / builtin.name
    local.parent.mkdir(parents=True)
    local.write_text("local: true\n")
    monkeypatch.chdir(tmp_path)
    assert find_config_file(builtin.name).resolve() == local.resolve()
    assert load_config(builtin.name).local is True


def test_unknown_name_suggests_closest():
    builtin = _first_builtin()
    typo = builtin.name.replace("/", "/x", 1)
    with pytest.raises(FileNotFoundError, match=f"did you mean '{builtin.name}'"):
        find_config_file(typo)


def test_invalid_yaml_names_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml is not a valid YAML config"):
        load_config(path)


def test_top_level_must_be_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(path)
