"""torchtune: a PyTorch-native library for fine-tuning large language models."""

__version__ = "0.7.0"
