"""The SFT recipes' default padding-free step trains exactly like the padded batch it replaces."""

import logging

import pytest

from tests.recipes._inprocess import run_recipe
from tests.recipes.utils import common_overrides, make_assets, model_overrides, read_losses

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return make_assets(tmp_path_factory.mktemp("padding_free_assets"))


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def _run(recipe, config, assets, out, *extra):
    """Losses of a 4-step run, and what it logged."""
    lines = _Lines()
    logging.getLogger("torchtune").addHandler(lines)
    try:
        run_recipe(recipe, config, [*common_overrides(assets, out), "batch_size=4", "gradient_accumulation_steps=1",
                                    "max_steps_per_epoch=4", "lr_scheduler.num_warmup_steps=0", "optimizer.lr=1e-2",
                                    *extra])
    finally:
        logging.getLogger("torchtune").removeHandler(lines)
    return read_losses(out / "logs"), "\n".join(lines.lines)


@pytest.mark.parametrize("recipe,config,builder", [
    ("lora_finetune_single_device", "llama2/7B_lora_single_device", "torchtune.models.llama2.lora_llama2"),
    ("full_finetune_single_device", "llama2/7B_full_low_memory", "torchtune.models.llama2.llama2"),
])
def test_padding_free_run_equals_the_padded_run(assets, tmp_path, recipe, config, builder):
    """Both configs as upstream ships them name CEWithChunkedOutputLoss (ours ships the fused loss)."""
    extra = [*model_overrides(builder), "loss._component_=torchtune.modules.loss.CEWithChunkedOutputLoss"]
    if recipe.startswith("full"):
        extra += ["optimizer._component_=torch.optim.AdamW", "optimizer_in_bwd=False"]
    else:
        extra += ["~loss.chunk_size"]
    padding_free, log = _run(recipe, config, assets, tmp_path / "free", *extra)
    assert "Padding-free batches" in log and "runs as LinearCrossEntropyLoss" in log
    padded, log = _run(recipe, config, assets, tmp_path / "padded", *extra, "padding_free=False")
    assert "Padding-free batches" not in log
    assert len(padding_free) == len(padded) == 4
    assert padding_free == pytest.approx(padded, rel=1e-5, abs=1e-5)
    assert padding_free[-1] < padding_free[0]
