import argparse
import os
import runpy
import shlex
import sys
from pathlib import Path
from typing import List, Optional, Tuple

from torchtune import _recipe_registry
from torchtune._cli.subcommand import CLIError, Subcommand
from torchtune._recipe_registry import Recipe
from torchtune.config._component import did_you_mean

# The command line of this `tune run`, for the resume command a stopped run prints.
RUN_COMMAND_ENV = "TUNE_RUN_COMMAND"
_FORWARDED_SIGNALS = "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1"

_USAGE = "tune run [TORCHRUN-OPTIONS] <recipe> --config <config> [key=value ...] [~key ...]"

_DESCRIPTION = """\
Run a built-in recipe (see `tune ls`) or a local recipe script with a built-in or local
config, plus command-line overrides of the config.

Single-device recipes run in this process. Distributed recipes, and any recipe given
torchrun's own options (--nproc_per_node, --nnodes, --rdzv_*, ...), are launched through
torch.distributed.run (torchrun); a single-device recipe asked for several processes is
refused."""

_EXAMPLES = """\
examples:
  tune run lora_finetune_single_device --config llama2/7B_lora_single_device
  tune run lora_finetune_single_device --config ./my_lora.yaml batch_size=4 optimizer.lr=1e-4 ~profiler
  tune run --nproc_per_node 2 lora_finetune_distributed --config llama2/7B_lora
  tune run ./my_recipe.py --config ./my_config.yaml
"""


def _build_parser() -> argparse.ArgumentParser:
    # Deferred import: torch is only loaded for `tune run`, so `tune ls` & co. start fast.
    from torch.distributed.run import get_args_parser

    parser = get_args_parser()
    parser.prog = "tune run"
    parser.usage = _USAGE
    parser.description = _DESCRIPTION
    parser.epilog = _EXAMPLES
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    # torchrun names its positionals after scripts; describe them as recipe arguments.
    for action in parser._actions:
        if action.dest == "training_script":
            action.metavar = "recipe"
            action.help = "built-in recipe name (see `tune ls`) or path to a recipe .py file"
        elif action.dest == "training_script_args":
            action.metavar = "recipe_args"
            action.help = "--config <config> (built-in name or YAML path) followed by key=value overrides"
    return parser


def _find_recipe(name: str) -> Tuple[Optional[Recipe], Path]:
    recipe = _recipe_registry.get_recipe(name)
    if recipe is not None:
        return recipe, recipe.path
    path = Path(name).expanduser()
    if path.suffix == ".py" and path.is_file():
        return None, path.resolve()
    if path.suffix == ".py":
        raise CLIError(f"recipe file {path} does not exist")
    names = [r.name for r in _recipe_registry.get_all_recipes()]
    raise CLIError(
        f"'{name}' is not a built-in recipe{did_you_mean(name, names)} nor a path to a .py file "
        "(`tune ls` lists the built-in recipes)"
    )


def _resolve_config_arg(recipe_args: List[str]) -> List[str]:
    """Replace a built-in config name after ``--config`` with the path of its file."""
    from torchtune.config import find_config_file

    out = list(recipe_args)
    for i, arg in enumerate(out):
        if arg == "--config" and i + 1 < len(out):
            index, value, prefix = i + 1, out[i + 1], ""
        elif arg.startswith("--config="):
            index, value, prefix = i, arg[len("--config="):], "--config="
        else:
            continue
        try:
            out[index] = prefix + str(find_config_file(value).resolve())
        except FileNotFoundError as err:
            raise CLIError(str(err)) from None
        break
    return out


def _asks_for_several_processes(args: argparse.Namespace) -> bool:
    nproc = str(args.nproc_per_node)
    nnodes = str(args.nnodes)
    # "auto", "gpu" and "cpu" pick a count at launch time: treat them as a request for several.
    return not (nproc == "1" and nnodes in ("1", "1:1"))


def _run_in_process(path: Path, recipe_args: List[str]) -> int:
    """Run the recipe script as ``__main__``, as ``python recipe.py ...`` would."""
    sys.argv = [str(path), *recipe_args]
    sys.path.insert(0, str(path.parent))
    runpy.run_path(str(path), run_name="__main__")
    return 0


def _run_distributed(args: argparse.Namespace, path: Path, recipe_args: List[str]) -> int:
    from torch.distributed.elastic.multiprocessing import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import run as torchrun

    args.training_script = str(path)
    args.training_script_args = recipe_args
    # torchrun's agent passes the signals it handles on to every rank (each rank runs in its own
    # session, so only this process gets a scheduler's or a terminal's signal); SIGUSR1, which
    # schedulers send ahead of a kill, is not in its default list.
    os.environ.setdefault("TORCHELASTIC_SIGNALS_TO_HANDLE", _FORWARDED_SIGNALS)
    try:
        torchrun(args)
    except SignalException as err:
        # The ranks got the signal, saved and exited (rank 0 printed the resume command), or
        # were killed by a second signal.
        print(f"tune run: {path.stem} stopped by {err.sigval.name}", file=sys.stderr)
        return 128 + int(err.sigval)
    except ChildFailedError as err:
        # The first rank to fail printed its own traceback (see training.record_rank_errors); the
        # order in which ranks *exit* is a race, so it is not used to name the culprit here.
        codes = ", ".join(f"rank {r}: code {f.exitcode}" for r, f in sorted(err.failures.items()))
        print(f"tune run: {path.stem} failed ({codes}); the first error is shown above", file=sys.stderr)
        return 1
    return 0


class RunCommand(Subcommand):
    name = "run"
    summary = "Run a recipe (in this process, or through torchrun)"
    description = _DESCRIPTION

    def add_to(self, subparsers) -> argparse.ArgumentParser:
        # Listed in `tune --help` only; `tune run` parses its own arguments (see `run_argv`),
        # because torchrun's options come before the recipe name.
        return subparsers.add_parser(self.name, help=self.summary, add_help=False)

    def run_argv(self, argv: List[str]) -> int:
        """Parse ``tune run``'s arguments (everything after ``run``) and run the recipe.

        Args:
            argv (List[str]): torchrun options, the recipe, then the recipe's arguments.

        Returns:
            int: exit status (the recipe's own ``sys.exit`` status propagates as SystemExit).

        Raises:
            CLIError: for an unknown recipe or config, or a single-device recipe asked to run
                on several processes.
        """
        # Recorded for the ranks, which print the command that resumes a stopped run.
        os.environ[RUN_COMMAND_ENV] = shlex.join(["tune", "run", *argv])
        if argv and not argv[0].startswith("-"):
            # No torchrun options: skip torchrun's parser, which costs a torch import.
            launcher, name, recipe_args = None, argv[0], argv[1:]
        else:
            launcher = _build_parser().parse_args(argv)
            name, recipe_args = launcher.training_script, launcher.training_script_args
        recipe, path = _find_recipe(name)
        recipe_args = _resolve_config_arg(recipe_args)
        if recipe is not None and not recipe.supports_distributed:
            if launcher is not None and _asks_for_several_processes(launcher):
                raise CLIError(
                    f"recipe '{recipe.name}' runs on a single device and cannot be launched on "
                    f"several processes (--nproc_per_node {launcher.nproc_per_node}, --nnodes "
                    f"{launcher.nnodes}); drop the torchrun options or use a *_distributed recipe"
                )
            return _run_in_process(path, recipe_args)
        if recipe is None and launcher is None:
            return _run_in_process(path, recipe_args)
        if launcher is None:
            # A distributed recipe without torchrun options: one process, torchrun's defaults.
            launcher = _build_parser().parse_args([str(path), *recipe_args])
        return _run_distributed(launcher, path, recipe_args)
