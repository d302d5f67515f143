def test_config_suffix_added_when_missing(run_tune, tmp_path, builtin_config):
    config = builtin_config
    out = run_tune("cp", config.name, str(tmp_path / "my_config"))
    assert out.returncode == 0, out.stderr
    dest = tmp_path / "my_config.yaml"
    assert dest.read_bytes() == config.path.read_bytes()
    assert str(dest) in out.stdout


def test_given_suffix_is_kept(run_tune, tmp_path, builtin_config):
    config = builtin_config
    out = run_tune("cp", config.name, str(tmp_path / "custom.yml"))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "custom.yml").read_bytes() == config.path.read_bytes()
    assert not (tmp_path / "custom.yml.yaml").exists()


def test_recipe_into_directory_and_suffix(run_tune, tmp_path, builtin_recipe):
    recipe = builtin_recipe
    out = run_tune("cp", recipe.name, str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / recipe.path.name).read_bytes() == recipe.path.read_bytes()
    out = run_tune("cp", recipe.name, "mine", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "mine.py").read_bytes() == recipe.path.read_bytes()


def test_overwrites_unless_no_clobber(run_tune, tmp_path, builtin_config):
    config = builtin_config
    dest = tmp_path / "existing.yaml"
    for flag in ("-n", "--no-clobber"):
        dest.write_text("mine: 1\n")
        out = run_tune("cp", config.name, str(dest), flag)
        assert out.returncode == 0, out.stderr
        assert "Not overwriting" in out.stdout and dest.read_text() == "mine: 1\n"
    out = run_tune("cp", config.name, str(dest))
    assert out.returncode == 0, out.stderr
    assert dest.read_bytes() == config.path.read_bytes()


def test_missing_parent_needs_make_parents(run_tune, tmp_path, builtin_config):
    config = builtin_config
    dest = tmp_path / "a" / "b" / "cfg.yaml"
    out = run_tune("cp", config.name, str(dest))
    assert out.returncode == 1
    assert "--make-parents" in out.stderr
    assert not dest.parent.exists()
    out = run_tune("cp", config.name, str(dest), "--make-parents")
    assert out.returncode == 0, out.stderr
    assert dest.read_bytes() == config.path.read_bytes()


def test_unknown_name_suggests(run_tune, tmp_path, builtin_config):
    config = builtin_config
    typo = config.name[:-1]
    out = run_tune("cp", typo, str(tmp_path / "x.yaml"))
    assert out.returncode == 1
    assert f"'{typo}' is not a built-in recipe or config; did you mean '{config.name}'?" in out.stderr
    assert not (tmp_path / "x.yaml").exists()
