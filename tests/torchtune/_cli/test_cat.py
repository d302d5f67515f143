import yaml

from torchtune import _recipe_registry


def test_cat_prints_file_as_written(run_tune, builtin_config):
    config = builtin_config
    out = run_tune("cat", config.name)
    assert out.returncode == 0, out.stderr
    assert out.stdout == config.path.read_text()


def test_cat_sort(run_tune, builtin_config):
    config = builtin_config
    out = run_tune("cat", config.name, "--sort")
    assert out.returncode == 0, out.stderr
    printed = yaml.safe_load(out.stdout)
    original = yaml.safe_load(config.path.read_text())
    assert list(printed) == sorted(original)
    for key, value in original.items():
        if isinstance(value, dict):
            assert list(printed[key]) == sorted(value)


def test_cat_recipe_or_unknown_fails(run_tune):
    recipe = next(r for r in _recipe_registry.get_all_recipes() if r.configs)
    out = run_tune("cat", recipe.name)
    assert out.returncode == 1
    assert "is a recipe, not a config" in out.stderr and recipe.configs[0].name in out.stderr
    out = run_tune("cat", "no_such/config")
    assert out.returncode == 1
    assert "'no_such/config' is neither a file nor a built-in config" in out.stderr
