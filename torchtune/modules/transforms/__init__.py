"""Per-sample transforms of the data pipeline (see ``tokenizers`` for the text tokenizers)."""

from torchtune.modules.transforms._transforms import Transform

__all__ = ["Transform"]
