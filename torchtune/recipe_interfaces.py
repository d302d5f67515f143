"""The shape of a recipe: the methods every fine-tuning or evaluation recipe class provides.

Recipes are self-contained scripts; these protocols only name the steps their ``recipe_main``
calls, so a reader (or a type checker) knows what to look for in any of them.
"""
from typing import Protocol


class FTRecipeInterface(Protocol):
    """A fine-tuning recipe: ``setup`` then ``train`` then ``cleanup``.

    ``load_checkpoint`` and ``save_checkpoint`` are called by ``setup`` and ``train``.
    """

    def load_checkpoint(self, **kwargs) -> None:
        """Read the model (and, when resuming, the recipe state) from the checkpointer."""
        ...

    def setup(self, **kwargs) -> None:
        """Build the model, tokenizer, data, optimizer, loss and schedulers from the config."""
        ...

    def train(self, **kwargs) -> None:
        """Run the training loop."""
        ...

    def save_checkpoint(self, **kwargs) -> None:
        """Write model weights (and recipe state for intermediate checkpoints)."""
        ...

    def cleanup(self, **kwargs) -> None:
        """Release resources: loggers, process groups."""
        ...


class EvalRecipeInterface(Protocol):
    """An evaluation recipe: ``setup`` then ``evaluate``."""

    def load_checkpoint(self, **kwargs) -> None:
        """Read the model to evaluate."""
        ...

    def setup(self, **kwargs) -> None:
        """Build the model and the evaluation tasks from the config."""
        ...

    def evaluate(self, **kwargs) -> None:
        """Run the evaluation and report the results."""
        ...
