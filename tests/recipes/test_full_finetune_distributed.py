"""full_finetune_distributed on 2 ranks (gloo, CPU) on a tiny Llama, against full_finetune_single_device
(in this process) on the same global batches. The 2-rank run and its mid-epoch resume share one
``tune run --nproc_per_node 2`` launch (tests/recipes/_inprocess.py): start-up is most of a run's cost."""

import pytest
import torch

from tests.recipes._inprocess import run_on_two_ranks, run_recipe
from tests.recipes.utils import RECIPE_MODEL, common_overrides, make_assets, model_overrides, read_losses

pytestmark = pytest.mark.integration

STEPS = 4


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return make_assets(tmp_path_factory.mktemp("full_dist_assets"))


def _args(assets, out, *extra):
    # Clipping is on so the global gradient norm over shards is compared too. A constant lr on both sides:
    # llama2/7B_full_low_memory ships a warmup schedule, llama2/7B_full none.
    return [*common_overrides(assets, out), *model_overrides("torchtune.models.llama2.llama2"), "optimizer.lr=1e-3",
            "optimizer.fused=False", "clip_grad_norm=1.0", f"max_steps_per_epoch={STEPS}", "save_every_n_steps=2",
            "lr_scheduler=null", *extra]


@pytest.fixture(scope="module")
def single_run(assets, tmp_path_factory):
    """Single device: 2 micro-batches of 2 per step (global batch 4)."""
    out = tmp_path_factory.mktemp("full_single")
    run_recipe("full_finetune_single_device", "llama2/7B_full_low_memory",
               _args(assets, out, "batch_size=2", "gradient_accumulation_steps=2", "optimizer_in_bwd=False"), cwd=out)
    return out


@pytest.fixture(scope="module")
def dist_runs(assets, tmp_path_factory):
    """2 ranks: 2 micro-batches of 1 per rank and step (global batch 4), layers checkpointed and sharded;
    then, in the same launch, its resume from the step-2 save in a fresh folder (the last mid-epoch save
    wrote the recipe state; the final epoch save does not). The resumed run leaves activation
    checkpointing off: recomputing activations changes no value. Returns (run folder, resumed folder)."""
    root = tmp_path_factory.mktemp("full_dist")
    out, resumed = root / "run", root / "resumed"
    recipe = ["full_finetune_distributed", "llama2/7B_full"]
    run_on_two_ranks([
        [*recipe, _args(assets, out, "batch_size=1", "gradient_accumulation_steps=2",
                        "enable_activation_checkpointing=True")],
        {"copy": [str(out / "step_2"), str(resumed / "step_2")]},
        {"copy": [str(out / "recipe_state"), str(resumed / "recipe_state")]},
        [*recipe, _args(assets, resumed, "batch_size=1", "gradient_accumulation_steps=2",
                        "resume_from_checkpoint=True")],
    ], root)
    return out, resumed


@pytest.fixture(scope="module")
def dist_run(dist_runs):
    return dist_runs[0]


def test_losses_equal_single_device_for_the_same_global_batch(single_run, dist_run):
    single, dist = read_losses(single_run / "logs"), read_losses(dist_run / "logs")
    assert len(dist) == STEPS and dist[-1] < dist[0] - 0.2, dist
    torch.testing.assert_close(dist, single, atol=1e-4, rtol=0)


def test_saved_model_loads_in_transformers_and_equals_single_device(single_run, dist_run):
    from transformers import AutoModelForCausalLM

    tokens = torch.randint(0, RECIPE_MODEL["vocab_size"], (2, 24))
    with torch.no_grad():
        dist = AutoModelForCausalLM.from_pretrained(str(dist_run / "epoch_0")).eval()(tokens).logits
        single = AutoModelForCausalLM.from_pretrained(str(single_run / "epoch_0")).eval()(tokens).logits
    torch.testing.assert_close(dist, single, atol=1e-4, rtol=1e-4)


def test_resume_mid_epoch_continues_the_loss_sequence(dist_runs):
    dist_run, resumed_dir = dist_runs
    resumed, uninterrupted = read_losses(resumed_dir / "logs"), read_losses(dist_run / "logs")[2:]
    assert len(resumed) == STEPS - 2 and resumed == uninterrupted  # exact, step for step
