"""End-to-end runs of full_finetune_single_device on a tiny Llama: the first through the real `tune` CLI,
the others in this process (the same recipe_main, without a subprocess's start-up)."""

import pytest
import torch

from tests.recipes._inprocess import run_recipe
from tests.recipes.utils import RECIPE_MODEL, common_overrides, make_assets, model_overrides, read_losses, run_tune

pytestmark = pytest.mark.integration

CONFIG = "llama2/7B_full_low_memory"


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return make_assets(tmp_path_factory.mktemp("full_assets"))


def _overrides(assets, out, *extra):
    # A constant lr of 1e-3: the config's 100-step warmup would keep these few-step runs near lr 0.
    return [*common_overrides(assets, out), *model_overrides("torchtune.models.llama2.llama2"), "optimizer.lr=1e-3",
            "lr_scheduler=null", "optimizer_in_bwd=False", "shuffle=False", *extra]


def _full_args(assets, out, *extra):
    return ["run", "full_finetune_single_device", "--config", CONFIG, *_overrides(assets, out, *extra)]


def _run(assets, out, *extra):
    run_recipe("full_finetune_single_device", CONFIG, _overrides(assets, out, *extra), cwd=out)


def test_full_finetune_lowers_the_loss_and_output_loads_in_transformers(assets, tmp_path):
    from transformers import AutoModelForCausalLM

    from torchtune.models.llama2 import llama2
    from torchtune.training import FullModelHFCheckpointer

    run_tune(_full_args(assets, tmp_path, "batch_size=4", "max_steps_per_epoch=6"), cwd=tmp_path)
    losses = read_losses(tmp_path / "logs")
    assert len(losses) == 6
    assert sum(losses[-2:]) / 2 < losses[0] - 0.2, losses

    out = tmp_path / "epoch_0"
    ours = llama2(**RECIPE_MODEL).eval()
    ckpt = FullModelHFCheckpointer(str(out), ["model.safetensors.index.json"], "LLAMA2", str(tmp_path / "reload"))
    ours.load_state_dict(ckpt.load_checkpoint()["model"])
    hf = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    tokens = torch.randint(0, RECIPE_MODEL["vocab_size"], (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(hf(tokens).logits, ours(tokens), atol=1e-5, rtol=1e-5)


def test_gradient_accumulation_2x2_equals_batch_4(assets, tmp_path):
    accum, batch = tmp_path / "accum", tmp_path / "batch"
    accum.mkdir(), batch.mkdir()
    _run(assets, accum, "batch_size=2", "gradient_accumulation_steps=2", "max_steps_per_epoch=4")
    _run(assets, batch, "batch_size=4", "gradient_accumulation_steps=1", "max_steps_per_epoch=4")
    torch.testing.assert_close(read_losses(accum / "logs"), read_losses(batch / "logs"), atol=1e-5, rtol=1e-5)


def test_optimizer_in_backward_trains(assets, tmp_path):
    _run(assets, tmp_path, "batch_size=4", "max_steps_per_epoch=4", "optimizer_in_bwd=True")
    losses = read_losses(tmp_path / "logs")
    assert len(losses) == 4 and losses[-1] < losses[0], losses
