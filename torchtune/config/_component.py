"""Resolve ``_component_`` dotted paths and check keyword arguments against signatures.

Shared by ``instantiate`` (which fails on the first bad node) and ``validate`` (which collects
every problem), so both report the same messages.
"""

import difflib
import importlib
import inspect
import pkgutil
from types import ModuleType
from typing import Any, Callable, Iterable, List, Optional

from torchtune.config._errors import InstantiationError

COMPONENT_KEY = "_component_"

_ACCEPTS_KEYWORD = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def join_key(parent: str, child: Any) -> str:
    """Return the dotted config key of ``child`` under ``parent`` (``"model.lora_rank"``)."""
    if isinstance(child, int):
        return f"{parent}[{child}]"
    return f"{parent}.{child}" if parent else str(child)


def describe_key(key: str) -> str:
    """Return how error messages name a config node: ``config key 'model'`` or the root."""
    return f"config key '{key}'" if key else "the config root"


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Return ``"; did you mean 'x'?"`` for the closest candidate, or ``""`` if none is close."""
    candidates = sorted(set(candidates))
    same_but_case = [c for c in candidates if c.lower() == name.lower()]
    matches = same_but_case or difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f"; did you mean '{matches[0]}'?" if matches else ""


def _attribute_names(obj: Any) -> List[str]:
    names = [n for n in dir(obj) if not n.startswith("_")]
    if isinstance(obj, ModuleType) and hasattr(obj, "__path__"):
        # Submodules that were never imported are not attributes yet.
        names += [m.name for m in pkgutil.iter_modules(obj.__path__)]
    return names


def _import_module(name: str, path: str, where: str) -> Optional[ModuleType]:
    """Import ``name``; return None if that module does not exist, raise if importing it fails."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name == name:
            return None
        raise InstantiationError(
            f"{where}: importing '{name}' for '{path}' failed: {err}"
        ) from err
    except Exception as err:
        raise InstantiationError(
            f"{where}: importing '{name}' for '{path}' failed: {type(err).__name__}: {err}"
        ) from err


def get_component_from_path(path: Any, key: str = "") -> Callable[..., Any]:
    """Import the class or function named by a dotted path.

    Args:
        path (Any): the ``_component_`` value, e.g. ``"torchtune.models.llama2.llama2"``.
        key (str): dotted config key of the node that holds it, used in error messages.

    Returns:
        Callable[..., Any]: the object the path names.

    Raises:
        InstantiationError: if ``path`` is not a dotted string, a part of it does not exist
            (with the closest existing name), importing a module fails, or the target is not
            callable.
    """
    where = describe_key(key)
    if not isinstance(path, str) or not path or any(not part for part in path.split(".")):
        raise InstantiationError(
            f"{where}: '{COMPONENT_KEY}' must be a dotted import path such as "
            f"'torch.optim.AdamW', got {path!r}"
        )
    parts = path.split(".")
    obj: Any = _import_module(parts[0], path, where)
    if obj is None:
        top_level = [m.name for m in pkgutil.iter_modules()]
        raise InstantiationError(
            f"{where}: cannot import '{path}': no module named '{parts[0]}'"
            f"{did_you_mean(parts[0], top_level)}"
        )
    for i, part in enumerate(parts[1:], start=1):
        prefix = ".".join(parts[:i])
        if hasattr(obj, part):
            obj = getattr(obj, part)
            continue
        if isinstance(obj, ModuleType):
            module = _import_module(f"{prefix}.{part}", path, where)
            if module is not None:
                obj = module
                continue
        raise InstantiationError(
            f"{where}: cannot import '{path}': '{prefix}' has no attribute '{part}'"
            f"{did_you_mean(part, _attribute_names(obj))}"
        )
    if not callable(obj):
        raise InstantiationError(
            f"{where}: '{path}' is a {type(obj).__name__}, not a class or function"
        )
    return obj


def _signature(component: Callable[..., Any]) -> Optional[inspect.Signature]:
    try:
        return inspect.signature(component)
    except (TypeError, ValueError):
        # Some C-implemented callables expose no signature; they get checked when called.
        return None


def unknown_argument_errors(
    component: Callable[..., Any], path: str, key: str, names: Iterable[str]
) -> List[InstantiationError]:
    """Return one error per keyword name that ``component`` does not accept.

    Args:
        component (Callable[..., Any]): the imported class or function.
        path (str): its dotted path, for messages.
        key (str): dotted config key of the node, for messages.
        names (Iterable[str]): keyword argument names the config would pass.

    Returns:
        List[InstantiationError]: empty if every name is accepted (or the callable takes
        ``**kwargs`` or has no inspectable signature).
    """
    sig = _signature(component)
    if sig is None:
        return []
    params = sig.parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return []
    accepted = [p.name for p in params if p.kind in _ACCEPTS_KEYWORD]
    return [
        InstantiationError(
            f"{describe_key(join_key(key, name))}: '{name}' is not an argument of "
            f"{path}{did_you_mean(name, accepted)}"
        )
        for name in names
        if name not in accepted
    ]


def check_call(component: Callable[..., Any], path: str, key: str, args: tuple, kwargs: dict) -> None:
    """Check that ``component(*args, **kwargs)`` binds to its signature.

    Raises:
        InstantiationError: naming the key and path, for unknown keywords (with the closest
            valid name) and for missing or duplicated arguments.
    """
    errors = unknown_argument_errors(component, path, key, kwargs)
    if errors:
        raise InstantiationError("\n".join(str(e) for e in errors))
    sig = _signature(component)
    if sig is None:
        return
    try:
        sig.bind(*args, **kwargs)
    except TypeError as err:
        raise InstantiationError(f"{describe_key(key)}: cannot call {path}: {err}") from err
