import argparse

from torchtune._cli.subcommand import CLIError, Subcommand


class ValidateCommand(Subcommand):
    name = "validate"
    summary = "Check that a config's components import and take its arguments"
    description = (
        "Check a config without building anything: every _component_ must import, every other\n"
        "key of its section must be an argument the component accepts, and every ${...}\n"
        "interpolation must resolve. All problems are reported at once."
    )
    examples = "  tune validate ./my_lora.yaml\n  tune validate llama2/7B_lora_single_device\n"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("config", help="path to a YAML config, or a built-in config name")

    def run(self, args: argparse.Namespace) -> int:
        from torchtune.config import ConfigError, load_config, validate

        try:
            validate(load_config(args.config))
        except (FileNotFoundError, ConfigError) as err:
            raise CLIError(str(err)) from None
        print("Config is well-formed!")
        return 0
