"""Write a random-init checkpoint for the model a config describes, so that a stack defined only in
YAML (``torchtune.models.decoder``) can be trained by the fine-tuning recipes from scratch.

Usage::

    python -m torchtune.models.init_checkpoint <config.yaml> [key=value ...]

writes ``<checkpointer.checkpoint_dir>/model.safetensors`` (torchtune layout, for
``FullModelTorchTuneCheckpointer``).
"""

import sys
from pathlib import Path
from typing import List, Optional, Sequence

import torch
from safetensors.torch import save_file

from torchtune import config
from torchtune.config._parse import apply_overrides


def write_init_checkpoint(config_file: str, overrides: Sequence[str] = (), seed: int = 0) -> Path:
    """Build ``model`` of the config with random weights and save them where its checkpointer reads.

    Args:
        config_file (str): config path or built-in name.
        overrides (Sequence[str]): ``key=value`` overrides, as on the ``tune run`` command line.
        seed (int): seed of the random initialisation. Default 0.

    Returns:
        Path: the written ``model.safetensors``.

    Raises:
        ValueError: if the config has no ``checkpointer.checkpoint_dir``.
    """
    cfg = apply_overrides(config.load_config(config_file), list(overrides))
    folder = cfg.get("checkpointer", {}).get("checkpoint_dir")
    if folder is None:
        raise ValueError(f"{config_file} has no checkpointer.checkpoint_dir to write the checkpoint to")
    torch.manual_seed(seed)
    model = config.instantiate(cfg.model)
    path = Path(folder) / "model.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def main(argv: Optional[List[str]] = None) -> None:
    """Command line: ``python -m torchtune.models.init_checkpoint <config.yaml> [key=value ...]``."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        raise SystemExit("usage: python -m torchtune.models.init_checkpoint <config.yaml> [key=value ...]")
    print(write_init_checkpoint(argv[0], argv[1:]))


if __name__ == "__main__":
    main()
