"""The built-in recipes and configs that ship with the package.

Recipe scripts live in the top-level ``recipes`` package (``recipes/<name>.py``) and configs in
``recipes/configs/<family>/<name>.yaml``; both are installed next to ``torchtune`` in
site-packages, so a non-editable install finds them too. Entries whose file is not present in
this installation are hidden from every lookup, so the CLI only ever offers files it can copy
or run.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

# ``recipes`` is installed as a sibling of ``torchtune`` (see pyproject.toml), both in a source
# checkout and in site-packages.
RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"
CONFIGS_DIR = RECIPES_DIR / "configs"


@dataclass
class Config:
    """A built-in config.

    Args:
        name (str): the name users type, e.g. ``"llama2/7B_lora"``.
        file_path (str): path relative to ``recipes/configs``, e.g. ``"llama2/7B_lora.yaml"``.
    """

    name: str
    file_path: str

    @property
    def path(self) -> Path:
        """Path: absolute location of the YAML file in this installation."""
        return CONFIGS_DIR / self.file_path


@dataclass
class Recipe:
    """A built-in recipe script and the configs written for it.

    Args:
        name (str): the name users type, e.g. ``"lora_finetune_single_device"``.
        file_path (str): path relative to ``recipes/``, e.g. ``"lora_finetune_single_device.py"``.
        configs (List[Config]): configs meant for this recipe.
        supports_distributed (bool): whether the recipe may run on several processes (torchrun).
    """

    name: str
    file_path: str
    configs: List[Config] = field(default_factory=list)
    supports_distributed: bool = False

    @property
    def path(self) -> Path:
        """Path: absolute location of the recipe script in this installation."""
        return RECIPES_DIR / self.file_path


def _llama2(*names: str) -> List[Config]:
    return [Config(name=f"llama2/{n}", file_path=f"llama2/{n}.yaml") for n in names]


def _single(name: str) -> List[Config]:
    return [Config(name=name, file_path=f"{name}.yaml")]


_REGISTRY: List[Recipe] = [
    Recipe(
        name="full_finetune_single_device",
        file_path="full_finetune_single_device.py",
        configs=_llama2("7B_full_low_memory"),
        supports_distributed=False,
    ),
    Recipe(
        name="full_finetune_distributed",
        file_path="full_finetune_distributed.py",
        configs=_llama2("7B_full", "13B_full"),
        supports_distributed=True,
    ),
    Recipe(
        name="lora_finetune_single_device",
        file_path="lora_finetune_single_device.py",
        configs=_llama2("7B_lora_single_device", "7B_qlora_single_device", "13B_qlora_single_device")
        + [Config(name="demo/tiny_llama_lora", file_path="demo/tiny_llama_lora.yaml")],
        supports_distributed=False,
    ),
    Recipe(
        name="lora_finetune_distributed",
        file_path="lora_finetune_distributed.py",
        configs=_llama2("7B_lora", "13B_lora", "70B_lora", "7B_qlora"),
        supports_distributed=True,
    ),
    Recipe(
        name="generate",
        file_path="generate.py",
        configs=_single("generation"),
        supports_distributed=False,
    ),
    Recipe(
        name="quantize",
        file_path="quantize.py",
        configs=_single("quantization"),
        supports_distributed=False,
    ),
    Recipe(
        name="eleuther_eval",
        file_path="eleuther_eval.py",
        configs=_single("eleuther_evaluation"),
        supports_distributed=False,
    ),
]


def get_all_recipes() -> List[Recipe]:
    """List the built-in recipes installed here, each with only its installed configs.

    Returns:
        List[Recipe]: recipes whose script exists, in registry order.
    """
    return [
        Recipe(
            name=r.name,
            file_path=r.file_path,
            configs=[c for c in r.configs if c.path.is_file()],
            supports_distributed=r.supports_distributed,
        )
        for r in _REGISTRY
        if r.path.is_file()
    ]


def get_all_configs() -> List[Config]:
    """List every installed built-in config, including those whose recipe is not installed.

    Returns:
        List[Config]: configs whose YAML file exists, in registry order.
    """
    return [c for r in _REGISTRY for c in r.configs if c.path.is_file()]


def get_recipe(name: str) -> Optional[Recipe]:
    """Find an installed built-in recipe by name.

    Args:
        name (str): recipe name such as ``"lora_finetune_single_device"``.

    Returns:
        Optional[Recipe]: the recipe, or None if no installed recipe has that name.
    """
    return next((r for r in get_all_recipes() if r.name == name), None)


def get_config(name: str) -> Optional[Config]:
    """Find an installed built-in config by name.

    Args:
        name (str): config name such as ``"llama2/7B_lora"``.

    Returns:
        Optional[Config]: the config, or None if no installed config has that name.
    """
    return next((c for c in get_all_configs() if c.name == name), None)
