"""GRPO single-device recipe, in process: LoRA learns a verifiable toy task, resume is exact, outputs load.

The toy task (``torchtune._demo_rl_assets``): prompts ``"a+b="`` with ``a, b in 0..2`` and a reward of 1
for the exact sum (``ArithmeticAnswerReward``), answered by a random-init 2-layer model whose
15-token vocabulary makes chance about 1/15.
"""

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from recipes.grpo_finetune_single_device import GRPOFinetuneRecipeSingleDevice
from torchtune._demo_rl_assets import TOY_MODEL, write_toy_rl_assets

CONFIG = Path(__file__).resolve().parents[2] / "recipes" / "configs" / "demo" / "tiny_grpo_lora.yaml"


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny matmuls: one thread is faster, and immune to a loaded machine's thread contention.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return write_toy_rl_assets(tmp_path_factory.mktemp("grpo_assets"))


def _cfg(assets, output_dir, *overrides):
    cfg = OmegaConf.load(CONFIG)
    base = [f"output_dir={output_dir}", f"tokenizer.path={assets['tokenizer']}",
            f"checkpointer.checkpoint_dir={assets['ckpt']}", f"dataset.data_files={assets['prompts']}"]
    return OmegaConf.merge(cfg, OmegaConf.from_dotlist(base + list(overrides)))


def _run(cfg):
    recipe = GRPOFinetuneRecipeSingleDevice(cfg)
    recipe.setup(cfg)
    recipe.train()
    recipe.cleanup()
    return recipe


def test_lora_grpo_learns_toy_arithmetic(assets, tmp_path):
    recipe = _run(_cfg(assets, tmp_path, "max_steps_per_epoch=30"))
    curve = recipe.reward_history
    print("GRPO reward curve:", [round(r, 3) for r in curve])
    assert len(curve) == 30
    chance = 1 / TOY_MODEL["vocab_size"]
    assert sum(curve[:3]) / 3 < 2 * chance, curve
    assert sum(curve[-10:]) / 10 > 4.5 * chance, curve  # clearly above chance (0.3 and more)
    assert (tmp_path / "epoch_0" / "adapter" / "adapter_config.json").is_file()


def test_resume_mid_epoch_is_exact(assets, tmp_path):
    fast = ["max_steps_per_epoch=4", "batch_size=4", "group_size=4", "ppo_batch_size=8", "save_every_n_steps=2"]
    full = _run(_cfg(assets, tmp_path / "run", *fast))
    adapter = torch.load(tmp_path / "run" / "epoch_0" / "adapter" / "adapter_model.pt", weights_only=True)
    assert (tmp_path / "run" / "step_2").is_dir()
    resumed = _run(_cfg(assets, tmp_path / "run", *fast, "resume_from_checkpoint=True"))
    assert resumed.reward_history == full.reward_history[2:]
    again = torch.load(tmp_path / "run" / "epoch_0" / "adapter" / "adapter_model.pt", weights_only=True)
    assert adapter.keys() == again.keys()
    for k in adapter:
        torch.testing.assert_close(again[k], adapter[k], atol=0, rtol=0)


def test_full_grpo_step_and_outputs_load_in_transformers_and_peft(assets, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    # LoRA outputs: merged folder in transformers, adapter folder in peft, same logits.
    _run(_cfg(assets, tmp_path / "lora", "max_steps_per_epoch=2", "batch_size=4", "group_size=4",
              "ppo_batch_size=16"))
    epoch_dir = tmp_path / "lora" / "epoch_0"
    tokens = torch.randint(0, TOY_MODEL["vocab_size"], (2, 8))
    with torch.no_grad():
        merged = AutoModelForCausalLM.from_pretrained(str(epoch_dir)).eval()(tokens).logits
        base = AutoModelForCausalLM.from_pretrained(str(assets["ckpt"])).eval()
        peft = PeftModel.from_pretrained(base, str(epoch_dir / "adapter")).eval()(tokens).logits
    torch.testing.assert_close(peft, merged, atol=1e-5, rtol=1e-5)

    # Full training: every weight trains against a frozen reference from ref_checkpointer.
    full = _cfg(assets, tmp_path / "full", "max_steps_per_epoch=2", "optimizer.lr=1e-3")
    full.model = OmegaConf.create({"_component_": "torchtune.models.llama2.llama2", **TOY_MODEL})
    full.ref_checkpointer = OmegaConf.merge(full.checkpointer, {"output_dir": str(tmp_path / "full" / "ref")})
    recipe = _run(full)
    assert recipe._reference is not None and not any(p.requires_grad for p in recipe._reference.parameters())
    trained = AutoModelForCausalLM.from_pretrained(str(tmp_path / "full" / "epoch_0")).eval()
    before = AutoModelForCausalLM.from_pretrained(str(assets["ckpt"])).eval()
    diffs = [(a - b).abs().max().item() for a, b in zip(trained.parameters(), before.parameters())]
    assert max(diffs) > 0  # the full weights moved
    assert not (tmp_path / "full" / "epoch_0" / "adapter").exists()


def test_qlora_grpo_trains_adapters_on_nf4_base_weights(assets, tmp_path):
    cfg = _cfg(assets, tmp_path, "max_steps_per_epoch=3", "batch_size=4", "group_size=4", "ppo_batch_size=16",
               "model.quantize_base=True", "model.apply_lora_to_output=False")
    recipe = _run(cfg)
    quantized = [n for n, p in recipe._model.named_parameters() if "NF4" in type(p.data).__name__]
    assert quantized, "no base weight was quantized to NF4"
    assert len(recipe.reward_history) == 3
    assert (tmp_path / "epoch_0" / "adapter" / "adapter_config.json").is_file()
