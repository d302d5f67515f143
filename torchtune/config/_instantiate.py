from collections.abc import Mapping
from typing import Any, Dict, Tuple

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from torchtune.config._component import (
    COMPONENT_KEY,
    check_call,
    describe_key,
    get_component_from_path,
    join_key,
    unknown_argument_errors,
)
from torchtune.config._errors import ComponentTypeError, InstantiationError
from torchtune.config._types import type_errors


def _node_key(node: DictConfig) -> str:
    """Return the node's dotted key in its root config (``"dataset[0]"``), for messages."""
    # OmegaConf tracks each node's parent and key but exposes them only as underscored methods.
    names = []
    while node._get_parent() is not None:
        names.append(node._key())
        node = node._get_parent()
    key = ""
    for name in reversed(names):
        key = join_key(key, name)
    return key


def _to_plain(value: Any, key: str) -> Any:
    """Turn OmegaConf containers into dicts and lists, resolving ``${...}`` interpolations."""
    if not isinstance(value, (DictConfig, ListConfig)):
        return value
    try:
        return OmegaConf.to_container(value, resolve=True)
    except OmegaConfBaseException as err:
        raise InstantiationError(f"{describe_key(key)}: cannot resolve the config: {err}") from err


def _build_children(value: Any, key: str) -> Any:
    """Instantiate every nested node that has a ``_component_``; copy everything else."""
    value = _to_plain(value, key)
    if isinstance(value, Mapping):
        if COMPONENT_KEY in value:
            return _build(value, key, (), {})
        return {k: _build_children(v, join_key(key, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_build_children(v, join_key(key, i)) for i, v in enumerate(value)]
    return value


def _build(node: Mapping, key: str, args: Tuple[Any, ...], overrides: Dict[str, Any]) -> Any:
    path = node[COMPONENT_KEY]
    component = get_component_from_path(path, key)
    names = [k for k in node if k != COMPONENT_KEY and k not in overrides]
    # Check argument names before building children, so a typo fails before heavy work.
    errors = unknown_argument_errors(component, path, key, names + list(overrides))
    if errors:
        raise InstantiationError("\n".join(str(e) for e in errors))
    kwargs = {k: _build_children(node[k], join_key(key, k)) for k in names}
    kwargs.update(overrides)
    check_call(component, path, key, args, kwargs)
    mistyped = type_errors(component, path, key, {k: kwargs[k] for k in names})
    if mistyped:
        raise InstantiationError("\n".join(str(e) for e in mistyped))
    try:
        return component(*args, **kwargs)
    except (ValueError, TypeError) as err:
        # ValueError is how builders reject a value, at any depth; a TypeError deep in the
        # library is more likely a bug, and keeps its traceback.
        if isinstance(err, InstantiationError) or (isinstance(err, TypeError) and not _raised_by(err, component)):
            raise
        # The component refused a config value (a LoRA rank of 0, a negative lr): a config error.
        error_type = ComponentTypeError if isinstance(err, TypeError) else InstantiationError
        raise error_type(f"{describe_key(key)} ({path}): {str(err).splitlines()[0] if str(err) else err!r}") from err
    except Exception as err:
        # Keep the original exception type (callers may catch it) but say which node raised it.
        if hasattr(err, "add_note"):  # Python >= 3.11
            err.add_note(f"while instantiating {describe_key(key)} ({path})")
        raise


def _raised_by(err: BaseException, component: Any) -> bool:
    """Whether ``err`` comes from checking the arguments: raised in the component's own frame or
    in a builder it calls directly, not deep inside the library (a bug keeps its traceback)."""
    depth = 0
    tb = err.__traceback__
    while tb is not None:
        depth += 1
        tb = tb.tb_next
    return depth <= 4  # _build's frame, the component, and at most two nested builders


def instantiate(config: Any, *args: Any, **kwargs: Any) -> Any:
    """Build the object a config node describes.

    The node's ``_component_`` is a dotted import path; its other keys become keyword
    arguments, after ``${...}`` interpolations are resolved against the whole config. Nested
    nodes (in dicts or lists) that have a ``_component_`` are built first and passed in.

    Example:
        >>> cfg = OmegaConf.create({"_component_": "torch.optim.AdamW", "lr": 1e-3})
        >>> opt = instantiate(cfg, model.parameters(), weight_decay=0.0)

    Args:
        config (Any): a ``DictConfig`` or mapping with a ``_component_`` key, or None.
        *args (Any): positional arguments for the component.
        **kwargs (Any): keyword arguments for the component; they override the node's keys and
            are passed as given (not converted or instantiated).

    Returns:
        Any: the built object, or None if ``config`` is None.

    Raises:
        InstantiationError: if ``_component_`` is missing, its path does not import, an
            argument is not accepted (with the closest valid name) or a required one is
            missing; the message names the config key and the path.
    """
    if config is None:
        return None
    if isinstance(config, DictConfig):
        key = _node_key(config)
    elif isinstance(config, Mapping):
        key = ""
    else:
        raise InstantiationError(
            f"instantiate expects a config node (DictConfig or dict) with a '{COMPONENT_KEY}' "
            f"key, got {type(config).__name__}"
        )
    node = _to_plain(config, key)
    if COMPONENT_KEY not in node:
        raise InstantiationError(
            f"{describe_key(key)} has no '{COMPONENT_KEY}' key (keys: {sorted(map(str, node))}); "
            f"set it to the dotted path of the class or function to build, "
            f"e.g. '{COMPONENT_KEY}: torch.optim.AdamW'"
        )
    return _build(node, key, args, kwargs)
