"""Run recipes inside the test process (or inside one torchrun launch), without a `tune` subprocess each.

``python -m tests.recipes._inprocess <spec.json>`` under torchrun starts the process group once and runs
every ``[recipe, config, overrides]`` of the spec in order with the recipe classes, so several
distributed recipes share one launch (their imports and process-group start are paid once).
"""

import importlib
import json
import sys
from typing import Sequence

from torchtune.config import load_config
from torchtune.config._parse import apply_overrides

# recipe module -> recipe class, for the distributed runs (recipe_main would start the group again).
RECIPE_CLASSES = {
    "knowledge_distillation_distributed": "KDRecipeDistributed",
    "qat_distributed": "QATRecipeDistributed",
    "qat_lora_finetune_distributed": "QATLoRAFinetuneRecipeDistributed",
}


def build_config(config: str, overrides: Sequence[str]):
    return apply_overrides(load_config(config), list(overrides))


def run_recipe(recipe: str, config: str, overrides: Sequence[str]) -> None:
    """``tune run <recipe> --config <config> <overrides>`` in this process (single-device recipes)."""
    importlib.import_module(f"recipes.{recipe}").recipe_main(build_config(config, overrides))


def run_in_group(recipe: str, config: str, overrides: Sequence[str]) -> None:
    """Run a distributed recipe's class inside an already initialised process group."""
    cfg = build_config(config, overrides)
    recipe_cls = getattr(importlib.import_module(f"recipes.{recipe}"), RECIPE_CLASSES[recipe])
    instance = recipe_cls(cfg=cfg)
    instance.setup(cfg=cfg)
    instance.train()
    instance.cleanup()


def main(spec_path: str) -> None:
    import torch

    from torchtune import training

    runs = json.loads(open(spec_path).read())
    training.init_distributed(backend="gloo")
    training.set_torch_num_threads()
    for recipe, config, overrides in runs:
        run_in_group(recipe, config, overrides)
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
