"""PPO single-device recipe, in process, on the toy assets: a synthetic reward rises, resume is exact.

The reward model (``torchtune._demo_rl_assets.write_toy_reward_model``) scores +1 when a response ends
in the digit 7 and -1 otherwise, so a random policy starts near -1 + 2/15.
"""

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from recipes.ppo_full_finetune_single_device import PPOFullFinetuneRecipeSingleDevice
from torchtune._demo_rl_assets import write_toy_rl_assets

CONFIG = Path(__file__).resolve().parents[2] / "recipes" / "configs" / "demo" / "tiny_ppo.yaml"


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return write_toy_rl_assets(tmp_path_factory.mktemp("ppo_assets"))


def _run(assets, output_dir, *overrides):
    cfg = OmegaConf.load(CONFIG)
    base = [f"output_dir={output_dir}", f"tokenizer.path={assets['tokenizer']}",
            f"checkpointer.checkpoint_dir={assets['ckpt']}", f"ref_policy_checkpointer.checkpoint_dir={assets['ckpt']}",
            f"value_checkpointer.checkpoint_dir={assets['reward']}",
            f"reward_checkpointer.checkpoint_dir={assets['reward']}", f"dataset.data_files={assets['prompts']}"]
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(base + list(overrides)))
    recipe = PPOFullFinetuneRecipeSingleDevice(cfg)
    recipe.setup(cfg)
    recipe.train()
    recipe.cleanup()
    return recipe


def test_ppo_raises_the_mean_reward_and_saves_policy_and_value(assets, tmp_path):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    recipe = _run(assets, tmp_path, "num_steps=384")  # 12 steps of 32 trajectories
    curve = recipe.reward_history
    print("PPO reward curve:", [round(r, 3) for r in curve])
    assert len(curve) == 12
    assert sum(curve[:2]) / 2 < -0.5, curve
    assert sum(curve[-3:]) / 3 > 0.5, curve
    # The trained policy and value model load in transformers.
    folders = sorted(p.name for p in tmp_path.glob("epoch_*"))
    assert folders, list(tmp_path.iterdir())
    AutoModelForCausalLM.from_pretrained(str(tmp_path / folders[-1]))
    AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "value" / folders[-1]))


def test_ppo_resume_mid_run_is_exact(assets, tmp_path):
    fast = ["num_steps=64", "batch_size=16", "ppo_batch_size=8", "save_every_n_steps=2"]
    full = _run(assets, tmp_path, *fast)  # 4 steps
    assert (tmp_path / "step_2").is_dir() and (tmp_path / "value" / "step_2").is_dir()
    final = sorted(tmp_path.glob("epoch_*"))[-1]
    from safetensors.torch import load_file

    before = load_file(str(next(final.glob("model-*.safetensors"))))
    resumed = _run(assets, tmp_path, *fast, "resume_from_checkpoint=True")
    assert resumed.reward_history == full.reward_history[2:]
    after = load_file(str(next(final.glob("model-*.safetensors"))))
    for k in before:
        torch.testing.assert_close(after[k], before[k], atol=0, rtol=0)
