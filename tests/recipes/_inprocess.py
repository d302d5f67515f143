"""Run recipes inside the test process (or inside one torchrun launch), without a `tune` subprocess each.

A ``tune run`` subprocess pays for its interpreter, its imports (torch, datasets, torchao: several
seconds on this machine) and its shutdown before the first step; in the test process they are paid
once. The real CLI path (argument parsing, ``tune run --nproc_per_node``, each recipe's ``__main__``)
keeps its own tests (tests/torchtune/_cli/test_run.py and the recipe tests that still call
``run_tune``).

``tune run --nproc_per_node 2 tests/recipes/_inprocess.py <spec.json>`` (``run_on_two_ranks``) starts
the process group once and runs, in order, every item of the spec: ``[recipe, config, overrides]``
runs that distributed recipe's class in the group; ``{"copy": [src, dst]}`` copies a folder (rank 0,
then a barrier), e.g. a mid-epoch save into a fresh output folder to resume from. Several
distributed runs (a run and its resume) then share one launch: imports and group start are paid once.
"""

import contextlib
import importlib
import io
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Union

from torchtune.config import load_config
from torchtune.config._parse import apply_overrides

# recipe module -> recipe class, for the distributed runs (recipe_main would start the group again).
RECIPE_CLASSES = {
    "full_finetune_distributed": "FullFinetuneRecipeDistributed",
    "grpo_finetune_distributed": "GRPOFinetuneRecipeDistributed",
    "knowledge_distillation_distributed": "KDRecipeDistributed",
    "lora_dpo_distributed": "LoRADPORecipeDistributed",
    "lora_finetune_distributed": "LoRAFinetuneRecipeDistributed",
    "qat_distributed": "QATRecipeDistributed",
    "qat_lora_finetune_distributed": "QATLoRAFinetuneRecipeDistributed",
}


def build_config(config: str, overrides: Sequence[str]):
    return apply_overrides(load_config(config), list(overrides))


def run_recipe(recipe: str, config: str, overrides: Sequence[str], cwd: Optional[Path] = None) -> None:
    """``tune run <recipe> --config <config> <overrides>`` in this process (single-device recipes).

    ``cwd``, like ``run_tune``'s, is the working directory during the run (relative paths in a
    config then land there, not in the repository); the previous one is restored afterwards.
    """
    module = importlib.import_module(f"recipes.{recipe}")
    cfg = build_config(config, overrides)
    previous = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        module.recipe_main(cfg)
    finally:
        os.chdir(previous)


@contextlib.contextmanager
def captured_log() -> Iterator[io.StringIO]:
    """Collect what the ``torchtune`` logger writes (a recipe's log) while the block runs.

    The logger does not propagate to the root logger, so neither ``caplog`` nor ``capsys`` (its
    handler holds the stream it was created with) sees it reliably; a handler of our own does.
    """
    from torchtune.utils import get_logger

    logger, text = get_logger(), io.StringIO()
    handler = logging.StreamHandler(text)
    handler.setFormatter(logging.Formatter("%(levelname)s:%(name)s:%(message)s"))
    logger.addHandler(handler)
    try:
        yield text
    finally:
        logger.removeHandler(handler)


Item = Union[Sequence, dict]


def run_on_two_ranks(runs: List[Item], workdir: Path, timeout: int = 600):
    """Run the spec's items on 2 CPU ranks (gloo) in one ``tune run --nproc_per_node 2`` launch.

    Args:
        runs (List[Item]): ``[recipe, config, overrides]`` or ``{"copy": [src, dst]}`` items, in order.
        workdir (Path): where the spec file is written and the launch runs.
        timeout (int): seconds before the launch is killed. Default 600.

    Returns:
        subprocess.CompletedProcess: the launch (its output holds rank 0's log).
    """
    from tests.recipes.utils import run_tune

    spec = Path(workdir) / "inprocess_runs.json"
    spec.write_text(json.dumps([item if isinstance(item, dict) else [item[0], item[1], list(item[2])]
                                for item in runs]))
    return run_tune(["run", "--nproc_per_node", "2", str(Path(__file__).resolve()), str(spec)], cwd=Path(workdir),
                    timeout=timeout)


def run_in_group(recipe: str, config: str, overrides: Sequence[str]) -> None:
    """Run a distributed recipe's class inside an already initialised process group."""
    cfg = build_config(config, overrides)
    recipe_cls = getattr(importlib.import_module(f"recipes.{recipe}"), RECIPE_CLASSES[recipe])
    instance = recipe_cls(cfg=cfg)
    instance.setup(cfg=cfg)
    instance.train()
    instance.cleanup()


def run_on_one_rank(recipe: str, config: str, overrides: Sequence[str]) -> None:
    """Run a distributed recipe's class in this process, on a one-rank gloo group started and ended here
    (a reference for the same recipe on several ranks, without a launch)."""
    import tempfile

    import torch.distributed as dist

    with tempfile.TemporaryDirectory() as rendezvous:
        dist.init_process_group("gloo", init_method=f"file://{rendezvous}/store", rank=0, world_size=1)
        try:
            run_in_group(recipe, config, overrides)
        finally:
            dist.destroy_process_group()


def _copy(src: str, dst: str) -> None:
    import torch.distributed as dist

    if dist.get_rank() == 0:
        shutil.copytree(src, dst)
    dist.barrier()


def main(spec_path: str) -> None:
    from torchtune import training
    from torchtune.utils import get_logger

    runs = json.loads(open(spec_path).read())
    if os.environ.get("RANK", "0") != "0":
        get_logger().setLevel("ERROR")  # one log for the job, rank 0's (as the recipes' __main__ does)
    # As in the recipes' __main__: a failing rank ends the job at once instead of leaving the
    # other one blocked in a collective until the test's timeout.
    with training.record_rank_errors():
        training.init_distributed(backend="gloo")
        training.set_torch_num_threads()
        for item in runs:
            if isinstance(item, dict):
                _copy(*item["copy"])
            else:
                run_in_group(*item)


if __name__ == "__main__":
    main(sys.argv[1])
