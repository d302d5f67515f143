"""GRPO on 2 CPU processes (FSDP2, gloo) through the real ``tune run``: LoRA trains, saves and resumes exactly.

(Full training on two ranks, with its sharded frozen reference, ran once by hand: each ``tune run`` costs
about 30 s of process start-up here, more than this suite's budget allows for a second case.)
"""

import re
from pathlib import Path

import pytest
import torch

from tests.recipes.utils import run_tune
from torchtune._demo_rl_assets import write_toy_rl_assets


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return write_toy_rl_assets(tmp_path_factory.mktemp("grpo_dist_assets"))


def _args(assets, out, *extra):
    return ["run", "--nproc_per_node", "2", "grpo_finetune_distributed", "--config",
            "demo/tiny_grpo_lora_distributed", f"output_dir={out}", f"tokenizer.path={assets['tokenizer']}",
            f"checkpointer.checkpoint_dir={assets['ckpt']}", f"dataset.data_files={assets['prompts']}",
            "group_size=4", "ppo_batch_size=8", *extra]


def _rewards(log_dir: Path):
    rewards = {}
    for f in sorted(log_dir.glob("*.txt")):
        for line in f.read_text().splitlines():
            m = re.match(r"Step (\d+) \| .*\breward:(\S+)", line)
            if m:
                rewards[int(m.group(1))] = float(m.group(2))
    return [rewards[k] for k in sorted(rewards)]


@pytest.mark.integration
def test_lora_grpo_on_two_ranks_resumes_exactly(assets, tmp_path):
    out = tmp_path / "run"
    run_tune(_args(assets, out, "max_steps_per_epoch=3", "save_every_n_steps=2"), cwd=tmp_path)
    full = _rewards(out / "logs")
    assert len(full) == 3, full
    adapter = torch.load(out / "epoch_0" / "adapter" / "adapter_model.pt", weights_only=True)
    assert (out / "step_2" / "adapter" / "adapter_config.json").is_file()
    for f in (out / "logs").glob("*.txt"):
        f.unlink()
    run_tune(_args(assets, out, "max_steps_per_epoch=3", "save_every_n_steps=2", "resume_from_checkpoint=True"),
             cwd=tmp_path)
    assert _rewards(out / "logs") == full[2:]
    again = torch.load(out / "epoch_0" / "adapter" / "adapter_model.pt", weights_only=True)
    for k in adapter:
        torch.testing.assert_close(again[k], adapter[k], atol=0, rtol=0)
