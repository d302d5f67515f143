import json
import logging
import subprocess
import sys
import textwrap

import pytest
from omegaconf import DictConfig, OmegaConf

from torchtune import _recipe_registry, config
from torchtune.config import ConfigError, apply_overrides

BASE = {
    "output_dir": "/tmp/out",
    "batch_size": 2,
    "optimizer": {"_component_": "torch.optim.AdamW", "lr": 3e-4, "weight_decay": 0.01},
    "profiler": {"_component_": "x.y", "enabled": False},
    "metric_logger": {"log_dir": "${output_dir}/logs"},
}


def _cfg() -> DictConfig:
    return OmegaConf.create(BASE)


def test_values_are_typed_like_yaml():
    cfg = apply_overrides(
        _cfg(),
        [
            "batch_size=4",
            "optimizer.lr=1e-5",
            "seed=null",
            "shuffle=true",
            "modules=[q_proj, v_proj]",
            "name=abc=def",
        ],
    )
    assert cfg.batch_size == 4 and isinstance(cfg.batch_size, int)
    assert cfg.optimizer.lr == pytest.approx(1e-5) and isinstance(cfg.optimizer.lr, float)
    assert cfg.seed is None
    assert cfg.shuffle is True
    assert list(cfg.modules) == ["q_proj", "v_proj"]
    assert cfg.name == "abc=def"  # only the first '=' separates key from value
    assert cfg.optimizer.weight_decay == 0.01  # untouched siblings stay


def test_mapping_merges_into_section_and_list_replaces_it():
    cfg = apply_overrides(_cfg(), ["optimizer={lr: 0.5, betas: [0.8, 0.9]}"])
    assert cfg.optimizer.lr == 0.5 and cfg.optimizer.weight_decay == 0.01
    assert list(cfg.optimizer.betas) == [0.8, 0.9]
    cfg = apply_overrides(_cfg(), ["metric_logger=[{_component_: a.b}, {_component_: a.c}]"])
    assert OmegaConf.to_container(cfg.metric_logger) == [{"_component_": "a.b"}, {"_component_": "a.c"}]


def test_delete_top_level_and_nested():
    cfg = apply_overrides(_cfg(), ["~profiler", "~optimizer.weight_decay"])
    assert "profiler" not in cfg
    assert "weight_decay" not in cfg.optimizer and cfg.optimizer.lr == 3e-4


def test_delete_missing_key_fails():
    with pytest.raises(ConfigError, match="cannot delete 'optimizer.betas'"):
        apply_overrides(_cfg(), ["~optimizer.betas"])


def test_component_swap_keeps_other_arguments():
    cfg = apply_overrides(_cfg(), ["optimizer._component_=torch.optim.SGD"])
    assert cfg.optimizer._component_ == "torch.optim.SGD" and cfg.optimizer.lr == 3e-4
    cfg = apply_overrides(_cfg(), ["optimizer=torch.optim.Adam"])  # shorthand on a component node
    assert cfg.optimizer._component_ == "torch.optim.Adam" and cfg.optimizer.weight_decay == 0.01


def test_interpolation_in_override_resolves_against_config():
    cfg = apply_overrides(_cfg(), ["metric_logger.log_dir=${output_dir}/other", "output_dir=/tmp/new"])
    assert cfg.metric_logger.log_dir == "/tmp/new/other"


@pytest.mark.parametrize("bad", ["batch_size", "--lr=1", "=3", "~", "~a=b"])
def test_malformed_override(bad):
    with pytest.raises(ConfigError, match="override"):
        apply_overrides(_cfg(), [bad])


def test_new_key_is_added_with_a_warning():
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("torchtune")
    logger.addHandler(handler)
    try:
        cfg = apply_overrides(_cfg(), ["batch_sise=8", "optimizer.lr=0.1"])
    finally:
        logger.removeHandler(handler)
    assert cfg.batch_sise == 8
    messages = [r.getMessage() for r in records]
    assert len(messages) == 1
    assert "batch_sise" in messages[0] and "did you mean 'batch_size'?" in messages[0]


def _write_yaml(tmp_path, data) -> str:
    path = tmp_path / "cfg.yaml"
    path.write_text(OmegaConf.to_yaml(OmegaConf.create(data)))
    return str(path)


def test_parse_reads_config_and_overrides_from_argv(tmp_path, monkeypatch):
    seen = {}

    @config.parse
    def main(cfg: DictConfig) -> int:
        seen["cfg"] = cfg
        return 7

    argv = ["recipe.py", "--config", _write_yaml(tmp_path, BASE), "batch_size=16", "~profiler"]
    monkeypatch.setattr(sys, "argv", argv)
    assert main() == 7
    assert seen["cfg"].batch_size == 16
    assert "profiler" not in seen["cfg"]
    assert seen["cfg"].metric_logger.log_dir == "/tmp/out/logs"


def test_parse_passes_a_given_config_through(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["recipe.py"])  # would fail to parse: no --config

    @config.parse
    def main(cfg: DictConfig) -> int:
        return cfg.batch_size

    assert main(_cfg()) == 2


def test_parse_resolves_builtin_config_name(monkeypatch):
    builtins = _recipe_registry.get_all_configs()
    assert builtins, "at least one built-in config must be installed"
    first = builtins[0]

    @config.parse
    def main(cfg: DictConfig) -> DictConfig:
        return cfg

    monkeypatch.setattr(sys, "argv", ["recipe.py", "--config", first.name])
    assert main() == OmegaConf.load(first.path)


def test_parse_requires_config(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["recipe.py", "batch_size=1"])
    with pytest.raises(SystemExit) as info:
        config.parse(lambda cfg: None)()
    assert info.value.code == 2
    assert "--config" in capsys.readouterr().err


def test_parse_reports_unknown_config_with_suggestion(monkeypatch, capsys):
    builtins = _recipe_registry.get_all_configs()
    assert builtins
    typo = builtins[0].name[:-1] + "x"
    monkeypatch.setattr(sys, "argv", ["recipe.py", "--config", typo])
    with pytest.raises(SystemExit) as info:
        config.parse(lambda cfg: None)()
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"'{typo}' is neither a file nor a built-in config; did you mean '{builtins[0].name}'?" in err


def test_parse_reports_bad_override(tmp_path, monkeypatch, capsys):
    argv = ["recipe.py", "--config", _write_yaml(tmp_path, BASE), "--batch_size", "3"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit):
        config.parse(lambda cfg: None)()
    assert "must look like key=value" in capsys.readouterr().err


def test_recipe_run_directly_with_python(tmp_path):
    recipe = tmp_path / "my_recipe.py"
    recipe.write_text(
        textwrap.dedent(
            """
            import json, sys
            from omegaconf import OmegaConf
            from torchtune import config

            @config.parse
            def main(cfg):
                print(json.dumps(OmegaConf.to_container(cfg, resolve=True), sort_keys=True))

            if __name__ == "__main__":
                sys.exit(main())
            """
        )
    )
    cfg_path = _write_yaml(tmp_path, BASE)
    out = subprocess.run(
        [sys.executable, str(recipe), "--config", cfg_path, "optimizer.lr=0.5", "~profiler"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    expected = OmegaConf.to_container(OmegaConf.create(BASE), resolve=True)
    expected["optimizer"]["lr"] = 0.5
    del expected["profiler"]
    assert json.loads(out.stdout) == expected
