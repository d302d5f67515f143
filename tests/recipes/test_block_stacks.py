"""Stacks described only in YAML (docs/examples/blocks/*.yaml, torchtune.models.decoder) train with
full_finetune_single_device (its ``recipe_main`` in this process, as ``tune run`` calls it; the CLI itself
is covered by test_full_finetune_single_device.py), from a random-init checkpoint."""

from pathlib import Path

import pytest

from tests.recipes._inprocess import run_recipe
from tests.recipes.utils import read_losses, write_alpaca_json
from tests.test_utils.tokenizer_fixtures import train_sentencepiece
from torchtune.config import load_config, validate
from torchtune.models.init_checkpoint import write_init_checkpoint
from torchtune.modules import ALiBiPositionBias, LinearAttention, MemoryTokens

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples" / "blocks"
CONFIGS = sorted(EXAMPLES.glob("*.yaml"))


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("block_assets")
    return {"tokenizer": train_sentencepiece(root, vocab_size=512), "data": write_alpaca_json(root / "data.json")}


def test_example_configs_exist_and_validate():
    assert {p.stem for p in CONFIGS} == {"alibi_postnorm_memory", "linear_attention"}
    for path in CONFIGS:
        validate(load_config(str(path)))


@pytest.mark.integration
@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_tune_run_lowers_the_loss_of_a_yaml_stack(path, assets, tmp_path):
    overrides = [f"output_dir={tmp_path}", f"tokenizer.path={assets['tokenizer']}", "dataset.source=json",
                 f"dataset.data_files={assets['data']}", "max_steps_per_epoch=6", "shuffle=False"]
    ckpt = write_init_checkpoint(str(path), overrides)
    assert ckpt == tmp_path / "base" / "model.safetensors"
    run_recipe("full_finetune_single_device", str(path), overrides, cwd=tmp_path)
    losses = read_losses(tmp_path / "logs")
    assert len(losses) == 6
    assert sum(losses[-2:]) / 2 < losses[0] - 0.5, losses
    assert (tmp_path / "epoch_0" / "model.safetensors").is_file()


def test_the_yaml_stacks_build_the_named_blocks():
    from torchtune import config

    alibi = config.instantiate(load_config(str(EXAMPLES / "alibi_postnorm_memory.yaml")).model)
    assert isinstance(alibi.memory_tokens, MemoryTokens)
    assert isinstance(alibi.layers[0].attn.attn_bias, ALiBiPositionBias)
    assert [layer.attn.sliding_window for layer in alibi.layers] == [16, None]
    linear = config.instantiate(load_config(str(EXAMPLES / "linear_attention.yaml")).model)
    assert all(isinstance(layer.attn, LinearAttention) for layer in linear.layers)
