import argparse

from torchtune import _recipe_registry
from torchtune._cli.subcommand import CLIError, Subcommand


class CatCommand(Subcommand):
    name = "cat"
    summary = "Print a built-in config"
    description = (
        "Print a built-in config (or a local YAML file) as written, comments included.\n"
        "With --sort, print its keys sorted alphabetically at every level instead."
    )
    examples = "  tune cat llama2/7B_lora_single_device\n  tune cat llama2/7B_lora_single_device --sort\n"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("config", help="built-in config name (see `tune ls`) or path to a YAML file")
        parser.add_argument("--sort", action="store_true", help="sort keys alphabetically (drops comments)")

    def run(self, args: argparse.Namespace) -> int:
        from torchtune.config import find_config_file, load_config

        recipe = _recipe_registry.get_recipe(args.config)
        if recipe is not None:
            configs = ", ".join(c.name for c in recipe.configs) or "none installed"
            raise CLIError(f"'{args.config}' is a recipe, not a config (its configs: {configs})")
        try:
            path = find_config_file(args.config)
        except FileNotFoundError as err:
            raise CLIError(str(err)) from None
        if args.sort:
            from omegaconf import OmegaConf

            print(OmegaConf.to_yaml(load_config(path), sort_keys=True), end="")
        else:
            print(path.read_text(), end="")
        return 0
