"""lora_finetune_distributed through the real `tune run --nproc_per_node 2` (gloo, CPU) on a tiny Llama,
against lora_finetune_single_device (in this process) on the same global batches.

Both recipes draw fresh adapters with training.get_initial_adapter_state_dict from the same seeded
generator, so a fresh 2-rank run and a fresh single-device run with the same global batch match
step for step. NF4 (QLoRA)
and DoRA sharding are covered on 2 ranks by tests/torchtune/training/test_distributed_state.py. Resuming
a 2-rank run from its intermediate checkpoint (bit for bit, with dropout) is checked by
tests/recipes/test_preemption.py, whose checkpoint is written by the same save as ``save_every_n_steps``.
"""

import os
import subprocess
import sys
import time

import pytest
import torch

from tests.recipes._inprocess import run_recipe
from tests.recipes.utils import RECIPE_MODEL, common_overrides, make_assets, model_overrides, read_losses, run_tune

pytestmark = pytest.mark.integration

STEPS = 6
DIST = ["run", "--nproc_per_node", "2", "lora_finetune_distributed", "--config", "llama2/7B_lora"]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return make_assets(tmp_path_factory.mktemp("lora_dist_assets"))


def _args(assets, out, *extra):
    # LinearCrossEntropyLoss calls the output projection itself: the recipe makes it its own FSDP unit.
    return [*common_overrides(assets, out), *model_overrides(), "model.lora_attn_modules=[q_proj,v_proj,output_proj]",
            "loss._component_=torchtune.modules.loss.LinearCrossEntropyLoss",
            "model.apply_lora_to_mlp=True", "model.lora_rank=8", "model.lora_alpha=16", "gradient_accumulation_steps=1",
            "optimizer.lr=1e-2", "optimizer.fused=False", "lr_scheduler.num_warmup_steps=0",
            f"max_steps_per_epoch={STEPS}", *extra]


@pytest.fixture(scope="module")
def dist_run(assets, tmp_path_factory):
    """2 ranks from scratch, batch 2 per rank."""
    out = tmp_path_factory.mktemp("lora_dist")
    run_tune([*DIST, *_args(assets, out, "batch_size=2")], cwd=out)
    return out


def test_fresh_run_lowers_the_loss(dist_run):
    losses = read_losses(dist_run / "logs")
    assert len(losses) == STEPS and sum(losses[-2:]) / 2 < losses[0] - 0.2, losses
    assert (dist_run / "epoch_0" / "adapter" / "adapter_config.json").is_file()


def test_single_device_recipe_on_the_same_global_batch_matches_it_step_for_step(assets, dist_run, tmp_path):
    from transformers import AutoModelForCausalLM

    run_recipe("lora_finetune_single_device", "llama2/7B_lora_single_device", _args(assets, tmp_path, "batch_size=4"),
               cwd=tmp_path)
    torch.testing.assert_close(read_losses(tmp_path / "logs"), read_losses(dist_run / "logs"), atol=1e-4, rtol=0)

    # The merged output loads in transformers and equals the single-device result; so do the adapters.
    tokens = torch.randint(0, RECIPE_MODEL["vocab_size"], (2, 24))
    with torch.no_grad():
        dist = AutoModelForCausalLM.from_pretrained(str(dist_run / "epoch_0")).eval()(tokens).logits
        single = AutoModelForCausalLM.from_pretrained(str(tmp_path / "epoch_0")).eval()(tokens).logits
    torch.testing.assert_close(dist, single, atol=1e-4, rtol=1e-4)
    dist_adapter, single_adapter = (torch.load(d / "epoch_0" / "adapter" / "adapter_model.pt", weights_only=True)
                                    for d in (dist_run, tmp_path))
    assert dist_adapter.keys() == single_adapter.keys()
    for k, v in single_adapter.items():
        torch.testing.assert_close(dist_adapter[k], v, atol=1e-4, rtol=1e-4, msg=k)


def test_a_failing_rank_stops_the_job_and_its_error_is_shown_once(assets, tmp_path):
    missing = "no-such-shard.safetensors"
    args = [*DIST, *_args(assets, tmp_path, "batch_size=2"), f"checkpointer.checkpoint_files=[{missing}]"]
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "torchtune._cli.tune", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=90)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert time.monotonic() - start < 60, "a rank waited on the failed one"
    assert output.count(f"Checkpoint shard not found: {assets['ckpt'] / missing}") == 1, output
    # Only rank 0 reads the checkpoint: a missing shard is an anticipated failure, shown as one
    # line without a traceback; the launcher's summary names the failed ranks without claiming an
    # exit order (a race).
    assert output.count("[rank0] error: Checkpoint shard not found") == 1 and "Traceback" not in output, output
    assert "lora_finetune_distributed failed (rank " in output, output
