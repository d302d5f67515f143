import pytest
from omegaconf import OmegaConf

from torchtune.config import ConfigError, validate

GOOD = {
    "output_dir": "/tmp/out",
    "model": {
        "_component_": "torchtune.models.llama2.llama2",
        "vocab_size": 64,
        "num_layers": 2,
        "num_heads": 4,
        "num_kv_heads": 2,
        "embed_dim": 64,
        "max_seq_len": 32,
    },
    # Recipes pass the parameters positionally at run time; validate must not require them.
    "optimizer": {"_component_": "torch.optim.AdamW", "lr": 3e-4, "weight_decay": 0.01},
    "logger": {"_component_": "types.SimpleNamespace", "log_dir": "${output_dir}/logs"},
    "batch_size": 2,
}


def test_good_config_passes():
    validate(OmegaConf.create(GOOD))
    validate(GOOD)  # plain mappings are accepted too


def test_reports_every_problem_at_once():
    cfg = OmegaConf.create(
        {
            "model": {"_component_": "torchtune.models.llama2.lama2", "vocab_size": 8},
            "optimizer": {"_component_": "torch.optim.AdamW", "lr": 1e-3, "betaz": [0.9, 0.9]},
            "scheduler": {"_component_": "torch.optim.lr_scheduler.NotAScheduler"},
            "datasets": [{"_component_": "fractions.Fraction", "numeratr": 1}],
            "logger": {"_component_": "types.SimpleNamespace", "log_dir": "${output_dirr}/logs"},
            "required": "???",
            "plain": {"nested": {"_component_": "nope_pkg_xyz.thing"}},
        }
    )
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    messages = [str(e) for e in info.value.errors]
    expected = [
        ("config key 'model'", "did you mean 'llama2'?"),
        ("config key 'optimizer.betaz'", "did you mean 'betas'?"),
        ("config key 'scheduler'", "torch.optim.lr_scheduler.NotAScheduler"),
        ("config key 'datasets[0].numeratr'", "did you mean 'numerator'?"),
        ("config key 'logger.log_dir'", "output_dirr"),
        ("config key 'required'", "Missing"),
        ("config key 'plain.nested'", "no module named 'nope_pkg_xyz'"),
    ]
    assert len(messages) == len(expected), messages
    for where, what in expected:
        assert any(where in m and what in m for m in messages), (where, what, messages)
    assert f"{len(expected)} problems" in str(info.value)


def test_does_not_call_components(tmp_path, monkeypatch):
    (tmp_path / "exploding_component_mod.py").write_text(
        "def build(size):\n    raise AssertionError('validate must not call components')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    validate(OmegaConf.create({"thing": {"_component_": "exploding_component_mod.build", "size": 3}}))


def test_components_with_var_kwargs_accept_any_key():
    validate(OmegaConf.create({"ns": {"_component_": "types.SimpleNamespace", "anything": 1}}))
