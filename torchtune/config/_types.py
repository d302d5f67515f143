"""Config values checked against types: a component's type hints, and the recipes' top-level keys.

``batch_size: four`` must fail as a config error naming ``batch_size``, not later as a PyTorch
sampler error. Only hints built from ``int``, ``float``, ``bool``, ``str``, ``None``,
``Optional`` / ``Union``, ``List`` / ``Tuple`` / ``Sequence``, ``Dict`` / ``Mapping`` and
``Literal`` are checked; a hint with any other type in it (a tensor, a module, a callable) is
skipped, since a config cannot hold such a value before instantiation anyway. YAML integers
are accepted where a float is expected; booleans are never taken for numbers.
"""

import collections.abc
import inspect
import typing
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from torchtune.config._component import describe_key, join_key

_UNKNOWN = object()  # a hint this module does not check

# Top-level keys every fine-tuning recipe reads with the same meaning: (type, smallest value).
RECIPE_KEY_TYPES: Dict[str, Tuple[Any, Optional[int]]] = {
    "batch_size": (int, 1),
    "epochs": (int, 1),
    "gradient_accumulation_steps": (int, 1),
    "max_steps_per_epoch": (Optional[int], 1),
    "log_every_n_steps": (Optional[int], 1),
    "save_every_n_steps": (Optional[int], 0),
    "run_val_every_n_steps": (Optional[int], 0),
    "keep_last_n_checkpoints": (Optional[int], 1),
    "seed": (Optional[int], 0),
    "clip_grad_norm": (Optional[float], 0),
    "shuffle": (bool, None),
    "resume_from_checkpoint": (bool, None),
    "compile": (bool, None),
    "enable_activation_checkpointing": (bool, None),
    "enable_activation_offloading": (bool, None),
    "log_peak_memory_stats": (bool, None),
    "save_adapter_weights_only": (bool, None),
    "output_dir": (str, None),
    "device": (Optional[str], None),
    "dtype": (Optional[str], None),
}


def _matches(value: Any, hint: Any) -> Any:
    """True / False when ``hint`` is checkable, else ``_UNKNOWN``."""
    if hint is Any:
        return True
    if hint is None or hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if isinstance(hint, type) and hint.__name__ == "Tensor":
        return False  # a config holds no tensors: in Union[float, Tensor] only float can match
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:
        results = [_matches(value, a) for a in args]
        if any(r is True for r in results):
            return True
        return _UNKNOWN if any(r is _UNKNOWN for r in results) else False
    if origin is typing.Literal:
        return value in args
    if origin in (list, tuple, collections.abc.Sequence):
        if not isinstance(value, (list, tuple)):
            return _UNKNOWN if value is not None and not isinstance(value, (int, float, str, bool)) else False
        element_hints = [a for a in args if a is not Ellipsis] or [Any]
        if origin is tuple and len(element_hints) > 1:
            return _UNKNOWN  # fixed-length tuples: not worth checking position by position
        results = [_matches(v, element_hints[0]) for v in value]
        if any(r is False for r in results):
            return False
        return _UNKNOWN if any(r is _UNKNOWN for r in results) else True
    if origin in (dict, collections.abc.Mapping):
        return True if isinstance(value, Mapping) else (_UNKNOWN if not isinstance(value, (int, float, str, bool,
                                                                                              list)) else False)
    return _UNKNOWN


def type_name(hint: Any) -> str:
    """A readable name for a hint: ``int``, ``Optional[int]``, ``List[str]``."""
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "").replace("NoneType", "None")


def _hints(component: Callable[..., Any]) -> Dict[str, Any]:
    target = component.__init__ if inspect.isclass(component) else component
    try:
        return typing.get_type_hints(target)
    except Exception:  # unresolvable forward references, C extensions: nothing to check
        return {}


def type_errors(component: Callable[..., Any], path: str, key: str, values: Mapping[str, Any]) -> List[Exception]:
    """Arguments whose values do not fit the component's type hints.

    Args:
        component (Callable[..., Any]): the class or function.
        path (str): its dotted path, for messages.
        key (str): the config node's key, e.g. ``"optimizer"``.
        values (Mapping[str, Any]): argument name -> value (plain Python, interpolations resolved).

    Returns:
        List[Exception]: one ``TypeError`` per mismatch, naming the key, e.g.
        ``config key 'optimizer.lr': expected float (a type hint of torch.optim.AdamW), got str 'fast'``.
    """
    hints = _hints(component)
    errors: List[Exception] = range_errors(key, values)
    for name, value in values.items():
        if name in hints and _matches(value, hints[name]) is False:
            errors.append(TypeError(f"{describe_key(join_key(key, name))}: expected {type_name(hints[name])} "
                                    f"(a type hint of {path}), got {type(value).__name__} {value!r}"[:400]))
    return errors


# Sizes that must be positive whatever component takes them (a 0 would fail as a division by
# zero or an empty tensor deep inside the build).
POSITIVE_ARGUMENTS = frozenset({
    "num_heads", "num_kv_heads", "num_layers", "embed_dim", "intermediate_dim", "vocab_size", "max_seq_len",
    "lora_rank", "head_dim", "hidden_dim", "num_output_chunks", "chunk_size",
})


def range_errors(key: str, values: Mapping[str, Any]) -> List[Exception]:
    """Values of ``POSITIVE_ARGUMENTS`` that are integers below 1, naming the key."""
    return [ValueError(f"{describe_key(join_key(key, name))}: must be >= 1, got {value!r}")
            for name, value in values.items()
            if name in POSITIVE_ARGUMENTS and isinstance(value, int) and not isinstance(value, bool) and value < 1]


def recipe_key_errors(values: Mapping[str, Any]) -> List[Exception]:
    """Top-level recipe keys (``batch_size``, ``epochs``...) of the wrong type or out of range.

    Args:
        values (Mapping[str, Any]): the config's top-level keys and their (resolved) values.

    Returns:
        List[Exception]: one error per bad key, naming it and what was expected.
    """
    errors: List[Exception] = []
    for name, (hint, smallest) in RECIPE_KEY_TYPES.items():
        if name not in values:
            continue
        value = values[name]
        if _matches(value, hint) is False:
            errors.append(TypeError(f"{describe_key(name)}: expected {type_name(hint)}, got "
                                    f"{type(value).__name__} {value!r}"[:400]))
        elif smallest is not None and value is not None and not isinstance(value, bool) and value < smallest:
            errors.append(ValueError(f"{describe_key(name)}: must be >= {smallest}, got {value!r}"))
    return errors
