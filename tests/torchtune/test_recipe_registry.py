import pytest

from torchtune import _recipe_registry


@pytest.fixture
def fake_install(tmp_path, monkeypatch):
    """Point the registry at a recipes folder holding only some of the registered files."""
    recipes = tmp_path / "recipes"
    (recipes / "configs" / "llama2").mkdir(parents=True)
    (recipes / "lora_finetune_single_device.py").write_text("# recipe\n")
    (recipes / "full_finetune_distributed.py").write_text("# recipe\n")
    (recipes / "configs" / "llama2" / "7B_lora_single_device.yaml").write_text("a: 1\n")
    (recipes / "configs" / "generation.yaml").write_text("b: 2\n")  # its recipe is absent
    monkeypatch.setattr(_recipe_registry, "RECIPES_DIR", recipes)
    monkeypatch.setattr(_recipe_registry, "CONFIGS_DIR", recipes / "configs")
    return recipes


def test_only_installed_entries_are_listed(fake_install):
    recipes = _recipe_registry.get_all_recipes()
    assert [(r.name, [c.name for c in r.configs]) for r in recipes] == [
        ("full_finetune_distributed", []),
        ("lora_finetune_single_device", ["llama2/7B_lora_single_device"]),
    ]
    configs = [c.name for c in _recipe_registry.get_all_configs()]
    assert configs == ["llama2/7B_lora_single_device", "generation"]


def test_lookups(fake_install):
    recipe = _recipe_registry.get_recipe("lora_finetune_single_device")
    assert recipe.path == fake_install / "lora_finetune_single_device.py"
    assert recipe.supports_distributed is False
    assert _recipe_registry.get_recipe("full_finetune_distributed").supports_distributed is True
    assert _recipe_registry.get_recipe("generate") is None  # registered, script not installed
    config = _recipe_registry.get_config("generation")
    assert config.path == fake_install / "configs" / "generation.yaml"
    assert _recipe_registry.get_config("llama2/7B_lora") is None


def test_registry_names_follow_file_paths():
    for recipe in _recipe_registry._REGISTRY:
        assert recipe.file_path == f"{recipe.name}.py"
        for config in recipe.configs:
            assert config.file_path == f"{config.name}.yaml"


def test_shipped_files_are_found_in_this_installation():
    # The real install (editable here) exposes at least the config the CLI tests rely on.
    assert _recipe_registry.RECIPES_DIR.is_dir()
    assert _recipe_registry.get_all_configs()
