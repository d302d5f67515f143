import torch
import torch.nn.functional as F
from torch import nn


class TiedLinear:
    """Output projection that shares its weight with an embedding (weight tying).

    It is deliberately not an ``nn.Module``, so the shared weight appears once in the
    state dict (under the embedding) and FSDP/LoRA wrappers see a single parameter.

    Args:
        tied_module (nn.Module): module whose ``weight`` of shape ``[vocab, dim]`` is reused.
    """

    def __init__(self, tied_module: nn.Module) -> None:
        self.tied_module = tied_module
        if not hasattr(tied_module, "weight"):
            raise ValueError("TiedLinear needs a module with a `weight` attribute, such as nn.Embedding")

    @property
    def weight(self) -> torch.Tensor:
        return self.tied_module.weight

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Project ``[b, s, dim]`` hidden states to ``[b, s, vocab]`` logits."""
        return F.linear(x, self.tied_module.weight)
