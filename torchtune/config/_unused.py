"""Warn about config keys that nothing reads: a misspelled key would otherwise be silently ignored."""

import re
from typing import Any, Iterable, List, Set

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from torchtune.config._component import (
    COMPONENT_KEY,
    did_you_mean,
    get_component_from_path,
    join_key,
    unknown_argument_errors,
)
from torchtune.config._errors import InstantiationError


def _component_problems(node: Any, key: str, out: List[str]) -> None:
    if isinstance(node, DictConfig):
        if COMPONENT_KEY in node:
            try:
                path = node[COMPONENT_KEY]
                component = get_component_from_path(path, key)
            except (InstantiationError, OmegaConfBaseException):
                return  # instantiate / validate report a component that does not import
            names = [str(k) for k in node.keys() if k != COMPONENT_KEY]
            out.extend(str(e) for e in unknown_argument_errors(component, path, key, names))
        children = [(join_key(key, k), k) for k in node.keys() if k != COMPONENT_KEY]
    elif isinstance(node, ListConfig):
        children = [(join_key(key, i), i) for i in range(len(node))]
    else:
        return
    for child_key, name in children:
        try:
            child = node[name]
        except OmegaConfBaseException:
            continue  # an unresolvable value is the business of validate
        _component_problems(child, child_key, out)


def _interpolated_top_level_keys(cfg: DictConfig) -> Set[str]:
    # ``checkpoint_dir: /tmp/model`` used as ``path: ${checkpoint_dir}`` is read through its references.
    text = OmegaConf.to_yaml(cfg, resolve=False)
    return set(re.findall(r"\$\{([A-Za-z_][\w]*)", text))


def find_unused_keys(cfg: DictConfig, recipe_keys: Iterable[str]) -> List[str]:
    """List the keys of a config that neither the recipe nor any component reads.

    A top-level key is read when it is one of ``recipe_keys``; a key inside a node with a
    ``_component_`` when it is a keyword argument of that component (a component taking
    ``**kwargs`` reads every key). A top-level key that other values interpolate
    (``${checkpoint_dir}``) is read through them. Nodes without ``_component_`` (plain sections
    such as ``checkpointer.checkpoint_files``) are not checked inside.

    Args:
        cfg (DictConfig): the config, after command-line overrides.
        recipe_keys (Iterable[str]): the top-level keys the recipe reads.

    Returns:
        List[str]: one message per unread key, naming it and the closest known key.
    """
    known = sorted(set(recipe_keys))
    referenced = _interpolated_top_level_keys(cfg)
    out = [
        f"config key '{key}' is not read by this recipe{did_you_mean(str(key), known)}"
        for key in cfg.keys()
        if key not in known and key not in referenced
    ]
    _component_problems(cfg, "", out)
    return out


def warn_unused_keys(cfg: DictConfig, recipe_keys: Iterable[str]) -> List[str]:
    """Log a warning for every config key that nothing reads (see ``find_unused_keys``).

    Args:
        cfg (DictConfig): the config, after command-line overrides.
        recipe_keys (Iterable[str]): the top-level keys the recipe reads.

    Returns:
        List[str]: the warnings logged.
    """
    messages = find_unused_keys(cfg, recipe_keys)
    if messages:
        from torchtune.utils import get_logger  # deferred: torchtune.utils imports torch

        for message in messages:
            get_logger().warning(message)
    return messages
