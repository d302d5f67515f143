from torchtune import _recipe_registry


def test_ls_lists_installed_recipes_and_configs(run_tune):
    out = run_tune("ls")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["RECIPE", "CONFIG"]
    rows = [line.split() for line in lines[1:]]
    recipes = _recipe_registry.get_all_recipes()
    assert any(r.configs for r in recipes), "at least one built-in config must be installed"
    # Rebuild the expected table rows from the registry: first config on the recipe's row,
    # further configs on rows with an empty recipe column.
    expected = []
    for recipe in recipes:
        names = [c.name for c in recipe.configs] or ["-"]
        expected.append([recipe.name, names[0]])
        expected.extend([name] for name in names[1:])
    assert rows == expected
    for recipe in recipes:
        assert recipe.path.is_file()
        assert all(c.path.is_file() for c in recipe.configs)
