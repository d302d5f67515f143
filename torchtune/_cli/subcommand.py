import argparse
from typing import Any


class CLIError(Exception):
    """A user-facing error: ``tune`` prints it without a traceback and exits with status 1."""


class Subcommand:
    """One ``tune`` verb: its parser (with examples in ``--help``) and what it does.

    Subclasses set ``name``, ``summary`` (one line for ``tune --help``), ``description`` and
    ``examples``, add their arguments in ``add_arguments`` and act in ``run``.
    """

    name: str = ""
    summary: str = ""
    description: str = ""
    examples: str = ""

    def add_to(self, subparsers: Any) -> argparse.ArgumentParser:
        """Register this verb on ``tune``'s subparsers and return its parser."""
        parser = subparsers.add_parser(
            self.name,
            help=self.summary,
            description=self.description or self.summary,
            epilog=f"examples:\n{self.examples}" if self.examples else None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        self.add_arguments(parser)
        parser.set_defaults(subcommand=self)
        return parser

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Declare the verb's arguments on ``parser``."""

    def run(self, args: argparse.Namespace) -> int:
        """Carry out the verb.

        Args:
            args (argparse.Namespace): parsed command line.

        Returns:
            int: exit status.

        Raises:
            CLIError: for bad input, with a message saying what to do.
        """
        raise NotImplementedError
