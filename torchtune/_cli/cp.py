import argparse
import os
import shutil
from pathlib import Path

from torchtune._cli._lookup import find_builtin, unknown_name_error
from torchtune._cli.subcommand import CLIError, Subcommand


def _destination(raw: str, source: Path) -> Path:
    """Where to copy ``source``: into a directory, or to a file name given its suffix if it has none."""
    dest = Path(raw).expanduser()
    if dest.is_dir() or raw.endswith(("/", os.sep)):
        return dest / source.name
    if dest.suffix == "":
        return dest.with_name(dest.name + source.suffix)
    return dest


class CopyCommand(Subcommand):
    name = "cp"
    summary = "Copy a built-in recipe or config to a local path"
    description = (
        "Copy a built-in recipe script or config file so you can edit it. When the destination\n"
        "has no suffix, .py (recipe) or .yaml (config) is added; a destination that is a\n"
        "directory (or ends with /) receives the file under its own name. An existing file is\n"
        "overwritten unless -n/--no-clobber is given."
    )
    examples = (
        "  tune cp llama2/7B_lora_single_device ./my_lora       # writes ./my_lora.yaml\n"
        "  tune cp lora_finetune_single_device ./recipes/ --make-parents\n"
        "  tune run ./recipes/lora_finetune_single_device.py --config ./my_lora.yaml\n"
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("file", help="built-in recipe or config name (see `tune ls`)")
        parser.add_argument("destination", help="file or directory to copy to")
        parser.add_argument(
            "--make-parents",
            action="store_true",
            help="create the destination's missing parent directories",
        )
        parser.add_argument(
            "-n",
            "--no-clobber",
            action="store_true",
            help="do not overwrite an existing destination file (it is kept, and cp succeeds)",
        )

    def run(self, args: argparse.Namespace) -> int:
        source = find_builtin(args.file)
        if source is None:
            raise unknown_name_error(args.file)
        dest = _destination(args.destination, source)
        if dest.exists() and args.no_clobber:
            print(f"Not overwriting existing {dest} (--no-clobber)")
            return 0
        if dest.is_dir():
            raise CLIError(f"{dest} is a directory; choose a file name")
        if not dest.parent.is_dir():
            if not args.make_parents:
                raise CLIError(f"directory {dest.parent} does not exist; pass --make-parents to create it")
            dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest)
        print(f"Copied {args.file} to {dest}")
        return 0
