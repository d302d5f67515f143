"""torchtune: a PyTorch-native library for fine-tuning large language models."""

import importlib

__version__ = "0.7.0"

# The sub-packages torchtune exposes at the top level. They are imported on first use
# (``torchtune.datasets``), so ``import torchtune`` and the ``tune`` CLI stay fast.
__all__ = ["datasets", "models", "modules", "utils", "generation"]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
