from collections.abc import Mapping
from typing import Any, List

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from torchtune.config._component import (
    COMPONENT_KEY,
    describe_key,
    get_component_from_path,
    join_key,
    unknown_argument_errors,
)
from torchtune.config._errors import ConfigError, InstantiationError
from torchtune.config._types import RECIPE_KEY_TYPES, recipe_key_errors, type_errors


def _children(node: Any, key: str, errors: List[Exception]) -> List[tuple]:
    """Return ``(child_key, value)`` pairs, recording values that fail to resolve."""
    names = list(node.keys()) if isinstance(node, DictConfig) else range(len(node))
    out = []
    for name in names:
        child_key = join_key(key, name)
        try:
            out.append((child_key, node[name]))  # indexing resolves ${...} interpolations
        except OmegaConfBaseException as err:
            errors.append(InstantiationError(f"{describe_key(child_key)}: {type(err).__name__}: {err}"))
    return out


def _plain_values(node: DictConfig, names: List[str]) -> dict:
    """The values of ``names`` that resolve, as plain Python (nested components left out)."""
    out = {}
    for name in names:
        try:
            value = node[name]
            if isinstance(value, DictConfig) and COMPONENT_KEY in value:
                continue  # built at run time: its type is the component's, not checkable here
            out[name] = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
        except OmegaConfBaseException:
            continue  # reported by _children
    return out


def _check(node: Any, key: str, errors: List[Exception]) -> None:
    if isinstance(node, DictConfig) and COMPONENT_KEY in node:
        try:
            path = node[COMPONENT_KEY]
            component = get_component_from_path(path, key)
        except (InstantiationError, OmegaConfBaseException) as err:
            errors.append(err)
        else:
            names = [str(k) for k in node.keys() if k != COMPONENT_KEY]
            errors.extend(unknown_argument_errors(component, path, key, names))
            errors.extend(type_errors(component, path, key, _plain_values(node, names)))
    if isinstance(node, (DictConfig, ListConfig)):
        for child_key, value in _children(node, key, errors):
            _check(value, child_key, errors)


def validate(cfg: Any) -> None:
    """Check a whole config without building anything.

    Every ``_component_`` must import and be callable, every other key of its node must be a
    keyword argument the component accepts (with a value that fits its type hint, where it has
    one), the recipes' common top-level keys (``batch_size``, ``epochs``...) must have their
    types and ranges, and every ``${...}`` interpolation and mandatory
    value (``???``) must resolve. Positional arguments that recipes pass at run time (model
    parameters for an optimizer, a tokenizer for a dataset) are not required here.

    Args:
        cfg (Any): a ``DictConfig`` (or mapping) such as the one a recipe receives.

    Raises:
        ConfigError: listing every problem found, each naming its config key.
    """
    if isinstance(cfg, Mapping) and not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(dict(cfg))
    if not isinstance(cfg, DictConfig):
        raise ConfigError([TypeError(f"expected a DictConfig or mapping, got {type(cfg).__name__}")])
    errors: List[Exception] = []
    errors.extend(recipe_key_errors(_plain_values(cfg, [k for k in map(str, cfg.keys()) if k in RECIPE_KEY_TYPES])))
    _check(cfg, "", errors)
    if errors:
        raise ConfigError(errors)
