from pathlib import Path
from typing import Union

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from yaml import YAMLError

from torchtune import _recipe_registry
from torchtune.config._component import did_you_mean
from torchtune.config._errors import ConfigError


def find_config_file(name_or_path: Union[str, Path]) -> Path:
    """Resolve a config argument to a YAML file.

    An existing file wins; otherwise the name is looked up among the built-in configs
    (``"llama2/7B_lora"``, with or without ``.yaml``).

    Args:
        name_or_path (Union[str, Path]): a path to a YAML file or a built-in config name.

    Returns:
        Path: the file to load.

    Raises:
        FileNotFoundError: if it is neither, with the closest built-in name.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    name = str(name_or_path)
    name = name[: -len(".yaml")] if name.endswith(".yaml") else name
    builtin = _recipe_registry.get_config(name)
    if builtin is not None:
        return builtin.path
    names = [c.name for c in _recipe_registry.get_all_configs()]
    raise FileNotFoundError(
        f"config '{name_or_path}' is neither a file nor a built-in config"
        f"{did_you_mean(name, names)} (`tune ls` lists the built-in configs)"
    )


def load_config(name_or_path: Union[str, Path]) -> DictConfig:
    """Load a YAML config given as a path or a built-in config name.

    Args:
        name_or_path (Union[str, Path]): e.g. ``"llama2/7B_lora"`` or ``"./my_config.yaml"``.

    Returns:
        DictConfig: the config, interpolations left unresolved.

    Raises:
        FileNotFoundError: if no such file or built-in config exists.
        ConfigError: if the file is not valid YAML or its top level is not a mapping.
    """
    path = find_config_file(name_or_path)
    try:
        cfg = OmegaConf.load(path)
    except (YAMLError, OmegaConfBaseException) as err:
        raise ConfigError([ValueError(f"{path} is not a valid YAML config: {err}")]) from err
    if not isinstance(cfg, DictConfig):
        raise ConfigError(
            [ValueError(f"{path} must hold a mapping of keys at the top level, got a list")]
        )
    return cfg
