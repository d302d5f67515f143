"""The DPO recipes on a tiny Llama and synthetic preference pairs (a right and a wrong answer per question).

- lora_dpo_single_device (in-process, the shipped tiny config): DPO raises the reward margin and accuracy;
  resuming from its mid-epoch save continues the metrics exactly; its merged output loads in transformers
  and its adapter in peft, both equal to our model with the trained adapter;
- lora_dpo_distributed on 2 ranks (gloo; the run and its resume share one ``tune run --nproc_per_node 2``
  launch, tests/recipes/_inprocess.py): step for step the same losses and rewards as the single-device run
  on the same global batches (to float rounding); resumed from a mid-epoch save, the uninterrupted 2-rank
  run's, bit for bit;
- full_dpo_distributed (in-process, one-rank gloo group): the margin rises, resuming from its mid-run
  save continues the metrics exactly, and the output loads in transformers.
"""

import json
import re
import shutil
from pathlib import Path
from typing import Dict, List

import pytest
import torch
from omegaconf import OmegaConf

from tests.recipes._inprocess import run_on_two_ranks
from tests.recipes.utils import RECIPE_MODEL, make_assets
from torchtune._recipe_registry import CONFIGS_DIR
from torchtune.rlhf._demo import make_preference_data

pytestmark = pytest.mark.integration

STEPS = 6


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("dpo_assets")
    paths = make_assets(root)  # tiny HF Llama (save_pretrained, 3 shards) and SentencePiece tokenizer
    paths["pairs"] = root / "pairs.json"
    # 8 distinct pairs, each seen 3 times over the 6 steps of 4 pairs: a few steps show a clear trend.
    paths["pairs"].write_text(json.dumps(make_preference_data(num_pairs=8, seed=0) * 3))
    return paths


def _overrides(assets, out: Path) -> List[str]:
    shards = "[" + ",".join(assets["shards"]) + "]"
    return [f"output_dir={out}", f"checkpointer.checkpoint_dir={assets['ckpt']}",
            f"checkpointer.checkpoint_files={shards}", f"dataset.data_files={assets['pairs']}",
            f"tokenizer.path={assets['ckpt'] / 'tokenizer.model'}", f"max_steps_per_epoch={STEPS}",
            "optimizer.lr=1e-2", "loss.beta=0.5"]


def _read_metrics(log_dir: Path) -> Dict[int, Dict[str, float]]:
    steps = {}
    for f in sorted(Path(log_dir).glob("*.txt")):
        for line in f.read_text().splitlines():
            m = re.match(r"Step (\d+) \| (.*)", line)
            if m:
                steps[int(m.group(1))] = {k: float(v) for k, v in (kv.split(":", 1) for kv in m.group(2).split())}
    return dict(sorted(steps.items()))


def _run_single_device(assets, out: Path, *extra: str) -> Dict[int, Dict[str, float]]:
    from recipes.lora_dpo_single_device import LoRADPORecipeSingleDevice

    cfg = OmegaConf.merge(OmegaConf.load(CONFIGS_DIR / "demo" / "tiny_llama_lora_dpo_single_device.yaml"),
                          OmegaConf.from_dotlist([*_overrides(assets, out), *extra]))
    recipe = LoRADPORecipeSingleDevice(cfg)
    recipe.setup(cfg)
    recipe.train()
    recipe.cleanup()
    return _read_metrics(out / "logs")


@pytest.fixture(scope="module")
def single_run(assets, tmp_path_factory):
    """6 steps of 4 pairs with a mid-epoch save at step 3 (reused by the tests below)."""
    out = tmp_path_factory.mktemp("dpo_single")
    return out, _run_single_device(assets, out, "save_every_n_steps=3")


def _mean(metrics, key, steps):
    return sum(metrics[s][key] for s in steps) / len(steps)


def test_lora_dpo_raises_the_margin_and_the_reward_accuracy(single_run):
    _, metrics = single_run
    assert list(metrics) == list(range(1, STEPS + 1))
    assert metrics[1]["rewards/margins"] == 0.0 and metrics[1]["loss"] == pytest.approx(0.6931, abs=1e-4)
    # Rewards are measured on each step's batch before its update; 4 pairs a step make them noisy,
    # so compare the first two steps with the last four.
    early, late = [1, 2], range(3, STEPS + 1)
    assert _mean(metrics, "rewards/margins", late) > _mean(metrics, "rewards/margins", early) + 0.5, metrics
    assert _mean(metrics, "rewards/accuracies", late) >= 0.7 > _mean(metrics, "rewards/accuracies", early), metrics
    assert _mean(metrics, "loss", late) < 0.6, metrics


def test_resume_mid_epoch_continues_exactly(assets, single_run, tmp_path):
    run_dir, metrics = single_run
    shutil.copytree(run_dir / "step_3", tmp_path / "step_3")
    shutil.copytree(run_dir / "recipe_state", tmp_path / "recipe_state")
    assert torch.load(tmp_path / "recipe_state" / "recipe_state.pt", weights_only=True)["steps_run"] == 3
    resumed = _run_single_device(assets, tmp_path, "save_every_n_steps=3", "resume_from_checkpoint=True")
    assert list(resumed) == list(range(4, STEPS + 1))
    for step, values in resumed.items():
        for key in ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"):
            assert values[key] == metrics[step][key], (step, key)


def test_outputs_load_in_transformers_and_peft(assets, single_run):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from torchtune.models.convert_weights import hf_to_tune
    from torchtune.models.llama2 import lora_llama2

    epoch_dir = single_run[0] / "epoch_0"
    tokens = torch.randint(0, RECIPE_MODEL["vocab_size"], (2, 20))
    base = AutoModelForCausalLM.from_pretrained(str(assets["ckpt"])).eval()
    ours = lora_llama2(["q_proj", "v_proj", "output_proj"], apply_lora_to_mlp=True, lora_rank=8, lora_alpha=16,
                       **RECIPE_MODEL).eval()
    dims = dict(num_heads=RECIPE_MODEL["num_heads"], num_kv_heads=RECIPE_MODEL["num_kv_heads"],
                dim=RECIPE_MODEL["embed_dim"])
    ours.load_state_dict(hf_to_tune(base.state_dict(), **dims), strict=False)
    ours.load_state_dict(torch.load(epoch_dir / "adapter" / "adapter_model.pt", weights_only=True), strict=False)
    with torch.no_grad():
        expected = ours(tokens)
        assert not torch.allclose(base(tokens).logits, expected, atol=1e-3)  # the adapter did train
        merged = AutoModelForCausalLM.from_pretrained(str(epoch_dir)).eval()
        torch.testing.assert_close(merged(tokens).logits, expected, atol=1e-5, rtol=1e-5)
        peft_model = PeftModel.from_pretrained(base, str(epoch_dir / "adapter")).eval()
        torch.testing.assert_close(peft_model(tokens).logits, expected, atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def two_rank_runs(assets, tmp_path_factory):
    """2 ranks on the single-device run's global batches (2 pairs per rank), saved at step 3, then resumed
    from that save in a fresh folder: both in one launch. Returns (run folder, resumed folder)."""
    root = tmp_path_factory.mktemp("dpo_two_ranks")
    run, resumed = root / "run", root / "resumed"
    recipe = ["lora_dpo_distributed", "demo/tiny_llama_lora_dpo"]
    run_on_two_ranks([
        [*recipe, [*_overrides(assets, run), "batch_size=2", "save_every_n_steps=3"]],
        {"copy": [str(run / "step_3"), str(resumed / "step_3")]},
        {"copy": [str(run / "recipe_state"), str(resumed / "recipe_state")]},
        [*recipe, [*_overrides(assets, resumed), "batch_size=2", "save_every_n_steps=3",
                   "resume_from_checkpoint=True"]],
    ], root)
    return run, resumed


def test_lora_dpo_distributed_equals_single_device_step_for_step(single_run, two_rank_runs):
    _, single = single_run
    dist = _read_metrics(two_rank_runs[0] / "logs")
    assert list(dist) == list(single)
    for step in dist:
        for key in ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"):
            assert dist[step][key] == pytest.approx(single[step][key], abs=2e-5), (step, key)


def test_lora_dpo_distributed_resumes_mid_epoch_exactly(two_rank_runs):
    # Against the uninterrupted 2-rank run, bit for bit (the single-device run differs by float rounding).
    run_dir, resumed_dir = two_rank_runs
    assert torch.load(resumed_dir / "recipe_state" / "recipe_state.pt", weights_only=True)["steps_run"] == 3
    resumed, uninterrupted = _read_metrics(resumed_dir / "logs"), _read_metrics(run_dir / "logs")
    assert list(resumed) == list(range(4, STEPS + 1))
    keys = ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies")
    for step, values in resumed.items():
        assert [values[k] for k in keys] == [uninterrupted[step][k] for k in keys], step


def _run_full_dpo(assets, out: Path, *extra: str) -> Dict[int, Dict[str, float]]:
    # In-process on a one-rank gloo group: sharding and pair-normalised steps across ranks are the LoRA
    # test's; this one is about the frozen reference copy (ref_checkpointer), the full-weight output and resume.
    import torch.distributed as dist

    from recipes.full_dpo_distributed import FullDPORecipeDistributed

    shards = "[" + ",".join(assets["shards"]) + "]"
    cfg = OmegaConf.merge(OmegaConf.load(CONFIGS_DIR / "demo" / "tiny_llama_full_dpo.yaml"), OmegaConf.from_dotlist([
        *_overrides(assets, out), f"ref_checkpointer.checkpoint_dir={assets['ckpt']}",
        f"ref_checkpointer.checkpoint_files={shards}", "optimizer.lr=3e-3", "batch_size=4", "max_steps_per_epoch=4",
        *extra]))
    dist.init_process_group("gloo", init_method=f"file://{out / 'pg'}", rank=0, world_size=1)
    try:
        recipe = FullDPORecipeDistributed(cfg)
        recipe.setup(cfg)
        recipe.train()
        recipe.cleanup()
    finally:
        dist.destroy_process_group()
    return _read_metrics(out / "logs")


def test_full_dpo_distributed_raises_the_margin_resumes_exactly_and_its_output_loads_in_transformers(
        assets, tmp_path):
    from transformers import AutoModelForCausalLM

    run, resumed_dir = tmp_path / "run", tmp_path / "resumed"
    run.mkdir()
    metrics = _run_full_dpo(assets, run, "save_every_n_steps=2")
    assert len(metrics) == 4 and metrics[1]["rewards/margins"] == 0.0
    assert _mean(metrics, "rewards/margins", [3, 4]) > 0.2 and metrics[4]["loss"] < 0.69, metrics
    model = AutoModelForCausalLM.from_pretrained(str(run / "epoch_0")).eval()
    base = AutoModelForCausalLM.from_pretrained(str(assets["ckpt"])).eval()
    tokens = torch.randint(0, RECIPE_MODEL["vocab_size"], (1, 12))
    with torch.no_grad():
        assert not torch.allclose(model(tokens).logits, base(tokens).logits, atol=1e-3)

    # Resume from the step-2 save: steps 3 and 4 again, exactly.
    resumed_dir.mkdir()
    shutil.copytree(run / "step_2", resumed_dir / "step_2")
    shutil.copytree(run / "recipe_state", resumed_dir / "recipe_state")
    resumed = _run_full_dpo(assets, resumed_dir, "save_every_n_steps=2", "resume_from_checkpoint=True")
    assert list(resumed) == [3, 4]
    for step, values in resumed.items():
        for key in ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"):
            assert values[key] == metrics[step][key], (step, key)
