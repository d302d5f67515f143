"""Name lookups shared by the verbs: built-in recipes and configs, with "did you mean" hints."""

from pathlib import Path
from typing import Optional

from torchtune import _recipe_registry
from torchtune._cli.subcommand import CLIError
from torchtune.config._component import did_you_mean


def _strip(name: str, suffix: str) -> str:
    return name[: -len(suffix)] if name.endswith(suffix) else name


def find_builtin(name: str) -> Optional[Path]:
    """Return the file of an installed built-in recipe or config, else None.

    Args:
        name (str): ``"lora_finetune_single_device"`` or ``"llama2/7B_lora"`` (a ``.py`` /
            ``.yaml`` suffix is accepted).

    Returns:
        Optional[Path]: the recipe script or config file in this installation.
    """
    recipe = _recipe_registry.get_recipe(_strip(name, ".py"))
    if recipe is not None:
        return recipe.path
    config = _recipe_registry.get_config(_strip(name, ".yaml"))
    return None if config is None else config.path


def unknown_name_error(name: str) -> CLIError:
    """Build the error for a name that is neither an installed recipe nor config."""
    names = [r.name for r in _recipe_registry.get_all_recipes()]
    names += [c.name for c in _recipe_registry.get_all_configs()]
    return CLIError(
        f"'{name}' is not a built-in recipe or config{did_you_mean(name, names)} "
        "(`tune ls` lists them)"
    )
