import json
import textwrap

import pytest
from omegaconf import OmegaConf

from torchtune import _recipe_registry

RECIPE = '''
"""Tiny recipe used by the `tune run` tests."""
import json, os, sys
from omegaconf import OmegaConf
from torchtune import config

@config.parse
def main(cfg):
    if cfg.get("log", False):  # log_config loads torch (via torchtune.utils): only when asked
        config.log_config(recipe_name="TinyRecipe", cfg=cfg)
    thing = config.instantiate(cfg.get("thing"))
    result = {
        "argv0": sys.argv[0],
        "rank": os.environ.get("RANK"),
        "cfg": OmegaConf.to_container(cfg),
        "thing": None if thing is None else [thing.numerator, thing.denominator],
    }
    print("RESULT " + json.dumps(result, sort_keys=True), flush=True)
    return cfg.get("exit_code", 0)

if __name__ == "__main__":
    sys.exit(main())
'''

CONFIG = """
output_dir: /tmp/tiny
thing:
  _component_: fractions.Fraction
  numerator: 1
  denominator: 4
drop: me
log: true
exit_code: 0
"""


@pytest.fixture
def tiny(tmp_path):
    recipe = tmp_path / "tiny_recipe.py"
    recipe.write_text(RECIPE)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(textwrap.dedent(CONFIG))
    return recipe, cfg


def _results(stdout: str):
    return [json.loads(line[len("RESULT "):]) for line in stdout.splitlines() if line.startswith("RESULT ")]


def test_run_local_recipe_with_overrides(run_tune, tiny):
    recipe, cfg = tiny
    out = run_tune("run", str(recipe), "--config", str(cfg), "thing.numerator=3", "~drop", "batch_size=4")
    assert out.returncode == 0, out.stderr
    (result,) = _results(out.stdout)
    assert result["argv0"] == str(recipe)
    assert result["thing"] == [3, 4]
    assert result["cfg"] == {
        "output_dir": "/tmp/tiny",
        "thing": {"_component_": "fractions.Fraction", "numerator": 3, "denominator": 4},
        "batch_size": 4,
        "log": True,
        "exit_code": 0,
    }
    assert "Running TinyRecipe with resolved config" in out.stderr


def test_run_propagates_recipe_exit_status(run_tune, tiny):
    recipe, cfg = tiny
    out = run_tune("run", str(recipe), f"--config={cfg}", "exit_code=3", "log=false")
    assert out.returncode == 3
    assert len(_results(out.stdout)) == 1


def test_run_with_builtin_config_name(run_tune, tiny):
    recipe, _ = tiny
    configs = _recipe_registry.get_all_configs()
    assert configs, "at least one built-in config must be installed"
    out = run_tune("run", str(recipe), "--config", configs[0].name, "batch_size=7")
    # The built-in config's own components are not instantiated by the tiny recipe.
    assert out.returncode == 0, out.stderr
    (result,) = _results(out.stdout)
    expected = OmegaConf.to_container(OmegaConf.load(configs[0].path))
    expected["batch_size"] = 7
    assert result["cfg"] == expected


def test_run_unknown_recipe_suggests(run_tune, tiny):
    _, cfg = tiny
    recipes = _recipe_registry.get_all_recipes()
    assert recipes, "at least one built-in recipe must be installed"
    typo = recipes[0].name[:-1]
    out = run_tune("run", typo, "--config", str(cfg))
    assert out.returncode == 1
    assert f"'{typo}' is not a built-in recipe; did you mean '{recipes[0].name}'?" in out.stderr
    out = run_tune("run", "missing_recipe.py", "--config", str(cfg))
    assert out.returncode == 1 and "missing_recipe.py does not exist" in out.stderr


def test_run_unknown_config(run_tune, tiny):
    recipe, _ = tiny
    out = run_tune("run", str(recipe), "--config", "no_such/config")
    assert out.returncode == 1
    assert "'no_such/config' is neither a file nor a built-in config" in out.stderr


def test_single_device_recipe_refuses_several_processes(run_tune, tiny):
    _, cfg = tiny
    single = [r for r in _recipe_registry.get_all_recipes() if not r.supports_distributed]
    assert single, "at least one single-device built-in recipe must be installed"
    out = run_tune("run", "--nproc_per_node", "2", single[0].name, "--config", str(cfg))
    assert out.returncode == 1
    assert f"recipe '{single[0].name}' runs on a single device" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.integration
def test_torchrun_launches_local_recipe_on_two_processes(run_tune, tiny):
    recipe, cfg = tiny
    launcher = ["--nproc_per_node", "2"]
    out = run_tune("run", *launcher, str(recipe), "--config", str(cfg), "thing.denominator=5", timeout=120)
    assert out.returncode == 0, out.stderr
    results = _results(out.stdout)
    assert sorted(r["rank"] for r in results) == ["0", "1"]
    assert all(r["thing"] == [1, 5] for r in results)
    # log_config prints once, from rank 0.
    assert (out.stdout + out.stderr).count("Running TinyRecipe with resolved config") == 1
