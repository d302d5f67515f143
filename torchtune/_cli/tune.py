"""Entry point of the ``tune`` command (``[project.scripts]`` in pyproject.toml)."""

import argparse
import os
import sys
from typing import List, Optional

from torchtune import __version__
from torchtune._errors import anticipated_error_types, DEBUG_ENV, report_anticipated
from torchtune._cli.cat import CatCommand
from torchtune._cli.cp import CopyCommand
from torchtune._cli.download import DownloadCommand
from torchtune._cli.ls import ListCommand
from torchtune._cli.run import RunCommand
from torchtune._cli.subcommand import CLIError
from torchtune._cli.validate import ValidateCommand

_EXAMPLES = """\
examples:
  tune ls                                                    # built-in recipes and configs
  tune download meta-llama/Llama-2-7b-hf --output-dir /tmp/Llama-2-7b-hf --hf-token <HF_TOKEN>
  tune cp llama2/7B_lora_single_device ./my_lora.yaml        # copy a config to edit
  tune validate ./my_lora.yaml
  tune run lora_finetune_single_device --config ./my_lora.yaml batch_size=4

Run `tune <command> --help` for the options of each command.
"""


def build_parser() -> argparse.ArgumentParser:
    """Build the ``tune`` parser with one subparser per verb."""
    parser = argparse.ArgumentParser(
        prog="tune",
        description="torchtune's command line: find, copy, check and run fine-tuning recipes.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"torchtune {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help=f"show tracebacks of anticipated errors too (same as {DEBUG_ENV}=1); give it first")
    subparsers = parser.add_subparsers(title="commands", metavar="<command>")
    commands = (DownloadCommand, ListCommand, CopyCommand, CatCommand, ValidateCommand, RunCommand)
    for command in commands:
        command().add_to(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run ``tune`` with ``argv`` (default ``sys.argv[1:]``) and return the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "--debug":
        # Tracebacks for anticipated failures too; the environment carries it to torchrun's ranks.
        os.environ[DEBUG_ENV] = "1"
        argv = argv[1:]
    parser = build_parser()
    verb = argv[0] if argv else ""
    try:
        if verb == RunCommand.name:
            # torchrun's options precede the recipe name, so `tune run` parses its own argv.
            return RunCommand().run_argv(argv[1:])
        args = parser.parse_args(argv)
        if not hasattr(args, "subcommand"):
            parser.print_help()
            return 0
        return args.subcommand.run(args)
    except CLIError as err:
        print(f"tune {verb}: error: {err}", file=sys.stderr)
        return 1
    except anticipated_error_types() as err:
        report_anticipated(err, prefix=f"tune {verb}: error")
        return 1


if __name__ == "__main__":
    sys.exit(main())
