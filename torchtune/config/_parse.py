"""``@config.parse``: turn ``--config PATH key=value ~key`` into the DictConfig a recipe runs on."""

import argparse
import functools
import inspect
import os
import sys
from typing import Any, Callable, List, Optional, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from torchtune._errors import anticipated_error_types, report_anticipated
from torchtune.config._component import COMPONENT_KEY, did_you_mean
from torchtune.config._errors import ConfigError
from torchtune.config._loading import load_config
from torchtune.config._types import RECIPE_KEY_TYPES, recipe_key_errors

_OVERRIDE_HELP = """\
overrides (after --config, any number, applied left to right):
  key=value              set a value; the value is typed as YAML would type it
                         (3e-4 -> float, null -> None, [q_proj,v_proj] -> list)
  nested.key=value       set a value inside a section, e.g. optimizer.lr=1e-5
  key._component_=path   swap a component, keeping its other arguments
  key=path               same, when `key` is a section with a _component_
  ~key                   delete a key (or a whole section)

example:
  %(prog)s --config llama2/7B_lora_single_device batch_size=4 optimizer.lr=1e-4 ~profiler
"""


def _parse_value(value: str) -> Any:
    # from_dotlist types the value with OmegaConf's YAML loader; to_container keeps an
    # interpolation such as ${output_dir}/x as text so it resolves against the full config.
    return OmegaConf.to_container(OmegaConf.from_dotlist([f"value={value}"]))["value"]


def _delete(cfg: DictConfig, key: str) -> None:
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key, default=None) if parent_key else cfg
    if isinstance(parent, DictConfig) and leaf in parent:
        del parent[leaf]
    elif isinstance(parent, ListConfig) and leaf.isdigit() and int(leaf) < len(parent):
        del parent[int(leaf)]
    else:
        raise ConfigError([KeyError(f"cannot delete '{key}': the config has no such key")])


def _warn_if_new(cfg: DictConfig, key: str) -> None:
    # Recipes read optional keys with cfg.get(..., default), so a new key may be intended;
    # still say so, because a typo such as batch_sise=4 would otherwise be silently ignored.
    parts = key.split(".")
    for i, part in enumerate(parts):
        prefix = ".".join(parts[:i])
        parent = cfg
        if prefix:
            parent = OmegaConf.select(cfg, prefix, default=None, throw_on_resolution_failure=False)
        if not isinstance(parent, DictConfig):
            return
        if part not in parent:
            from torchtune.utils import get_logger  # deferred: torchtune.utils imports torch

            hint = did_you_mean(part, [str(k) for k in parent.keys()])
            get_logger().warning(f"override adds '{key}', which is not in the config{hint}")
            return


def apply_overrides(cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """Apply command-line overrides to a config, in order.

    Args:
        cfg (DictConfig): the loaded config; modified in place.
        overrides (Sequence[str]): items like ``"optimizer.lr=1e-4"``, ``"~profiler"``,
            ``"model._component_=torchtune.models.llama2.llama2_13b"``.

    Returns:
        DictConfig: ``cfg``, for chaining.

    Raises:
        ConfigError: for an item that is not ``key=value`` or ``~key``, or deletes a key that
            does not exist.
    """
    for item in overrides:
        try:
            _apply_one(cfg, item)
        except OmegaConfBaseException as err:
            raise ConfigError([ValueError(f"override '{item}': {err}")]) from err
    return cfg


def _apply_one(cfg: DictConfig, item: str) -> None:
    if item.startswith("~"):
        key = item[1:]
        if not key or "=" in key:
            raise ConfigError([ValueError(f"override '{item}': deletion takes a key, e.g. ~profiler")])
        _delete(cfg, key)
        return
    key, sep, raw = item.partition("=")
    if not sep or not key or key.startswith("-"):
        message = f"override '{item}' must look like key=value, nested.key=value or ~key"
        raise ConfigError([ValueError(message)])
    value = _parse_value(raw)
    current = OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)
    if isinstance(current, DictConfig) and COMPONENT_KEY in current and isinstance(value, str):
        key = f"{key}.{COMPONENT_KEY}"  # `model=path` swaps the component
    _warn_if_new(cfg, key)
    # A mapping merges into an existing section; anything else replaces the value.
    merge = isinstance(value, dict) and isinstance(current, DictConfig)
    OmegaConf.update(cfg, key, value, merge=merge)


def _build_parser(recipe_main: Callable[..., Any]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=inspect.getdoc(recipe_main) or inspect.getdoc(inspect.getmodule(recipe_main)),
        usage="%(prog)s --config CONFIG [key=value ...] [~key ...]",
        epilog=_OVERRIDE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        required=True,
        help="path to a YAML config, or a built-in config name such as "
        "llama2/7B_lora_single_device (`tune ls` lists them)",
    )
    return parser


def parse_args(recipe_main: Callable[..., Any], argv: Optional[List[str]] = None) -> DictConfig:
    """Build a recipe's config from ``--config`` and overrides (``sys.argv[1:]`` by default).

    Exits with a usage message (status 2) on a bad command line or config file.
    """
    parser = _build_parser(recipe_main)
    known, overrides = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    try:
        cfg = apply_overrides(load_config(known.config), overrides)
        top = {}
        for name in RECIPE_KEY_TYPES:
            if name in cfg:
                try:
                    top[name] = cfg[name]
                except OmegaConfBaseException:
                    continue  # an unresolvable interpolation fails where the recipe reads it
        errors = recipe_key_errors(top)
        if errors:
            raise ConfigError(errors)
        return cfg
    except (FileNotFoundError, ConfigError) as err:
        parser.error(str(err))


def parse(recipe_main: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator for a recipe's ``main(cfg: DictConfig)``: read the config from the command line.

    ``main()`` called without a config parses ``sys.argv``: ``--config`` takes a YAML path or
    a built-in config name, and every further argument is an override (``key=value``,
    ``nested.key=value``, ``~key``, ``key._component_=path``). ``main(cfg)`` with a
    ``DictConfig`` skips parsing, which tests use. Parsed from the command line, an anticipated
    failure (``torchtune._errors.TorchtuneError``, a missing file) is printed on one line and
    the process exits with status 1 (``TUNE_DEBUG=1`` adds the traceback).

    Example:
        >>> @config.parse
        ... def main(cfg: DictConfig) -> None:
        ...     ...
        >>> if __name__ == "__main__":
        ...     sys.exit(main())  # python recipe.py --config my.yaml batch_size=4

    Args:
        recipe_main (Callable[..., Any]): the function to call with the parsed config.

    Returns:
        Callable[..., Any]: a wrapper returning ``recipe_main``'s result.
    """

    @functools.wraps(recipe_main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if args and isinstance(args[0], DictConfig):
            return recipe_main(*args, **kwargs)
        cfg = parse_args(recipe_main)
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            # training.record_rank_errors reports a distributed rank's failure, once per job.
            return recipe_main(cfg, *args, **kwargs)
        try:
            return recipe_main(cfg, *args, **kwargs)
        except anticipated_error_types() as err:
            # An anticipated failure (bad config, checkpoint, data...): its message, not a traceback.
            report_anticipated(err)
            raise SystemExit(1) from None

    return wrapper
