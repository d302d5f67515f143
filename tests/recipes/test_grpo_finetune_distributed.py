"""GRPO on 2 CPU processes (FSDP2, gloo): LoRA trains, saves and resumes exactly.

The run and its resume share one ``tune run --nproc_per_node 2`` launch (tests/recipes/_inprocess.py):
process start-up, not the 4 steps, is most of the cost. (Full training on two ranks, with its sharded
frozen reference, ran once by hand: more than this suite's budget allows for a second case.)
"""

import re
from pathlib import Path

import pytest
import torch

from tests.recipes._inprocess import run_on_two_ranks
from torchtune._demo_rl_assets import write_toy_rl_assets


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return write_toy_rl_assets(tmp_path_factory.mktemp("grpo_dist_assets"))


def _run(assets, out, *extra):
    return ["grpo_finetune_distributed", "demo/tiny_grpo_lora_distributed", [
        f"output_dir={out}", f"tokenizer.path={assets['tokenizer']}", f"checkpointer.checkpoint_dir={assets['ckpt']}",
        f"dataset.data_files={assets['prompts']}", "group_size=4", "ppo_batch_size=8", "max_steps_per_epoch=3",
        "save_every_n_steps=2", *extra]]


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
    out, first = tmp_path / "run", tmp_path / "first_epoch_0"
    # The run; a copy of its final output; its resume in the same folder (the recipe state is the
    # step-2 save's: the final epoch save does not write one), logging to a folder of its own.
    run_on_two_ranks([_run(assets, out), {"copy": [str(out / "epoch_0"), str(first)]},
                      _run(assets, out, "resume_from_checkpoint=True",
                           f"metric_logger.log_dir={out / 'logs_resumed'}")], tmp_path)
    full = _rewards(out / "logs")
    assert len(full) == 3, full
    assert (out / "step_2" / "adapter" / "adapter_config.json").is_file()
    assert _rewards(out / "logs_resumed") == full[2:]
    adapter = torch.load(first / "adapter" / "adapter_model.pt", weights_only=True)
    again = torch.load(out / "epoch_0" / "adapter" / "adapter_model.pt", weights_only=True)
    assert adapter.keys() == again.keys()
    for k in adapter:
        torch.testing.assert_close(again[k], adapter[k], atol=0, rtol=0)
