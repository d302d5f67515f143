import argparse
from typing import List, Tuple

from torchtune import _recipe_registry
from torchtune._cli.subcommand import Subcommand


def _format_table(rows: List[Tuple[str, str]], header: Tuple[str, str]) -> str:
    width = max(len(r[0]) for r in [header, *rows]) + 4
    return "\n".join(f"{left:<{width}}{right}".rstrip() for left, right in [header, *rows])


class ListCommand(Subcommand):
    name = "ls"
    summary = "List the built-in recipes and their configs"
    description = (
        "List every built-in recipe and the configs written for it. Use the names with\n"
        "`tune run`, `tune cp` and `tune cat`."
    )
    examples = "  tune ls\n"

    def run(self, args: argparse.Namespace) -> int:
        rows = []
        for recipe in _recipe_registry.get_all_recipes():
            names = [c.name for c in recipe.configs] or ["-"]
            rows.append((recipe.name, names[0]))
            rows.extend(("", name) for name in names[1:])
        if not rows:
            print("No built-in recipes are installed.")
            return 0
        print(_format_table(rows, ("RECIPE", "CONFIG")))
        return 0
