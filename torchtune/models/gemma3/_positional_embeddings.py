"""Gemma 3's RoPE: rotate-half rotary embeddings, optionally with linear position scaling."""

import torch

from torchtune.models.qwen2._positional_embeddings import Qwen2RotaryPositionalEmbeddings


class Gemma3RotaryPositionalEmbeddings(Qwen2RotaryPositionalEmbeddings):
    """Rotary embeddings in the rotate-half layout of Hugging Face checkpoints, positions divided by ``scale_factor``.

    Gemma 3 4B, 12B and 27B stretch the RoPE of their global layers 8x (config.json
    ``rope_scaling: {"rope_type": "linear", "factor": 8.0}``): every frequency is divided by the
    factor, which is the same as dividing positions by it. Their local layers, and every layer of
    270M and 1B, use ``scale_factor=1``. Gemma 3 state dicts keep Hugging Face's q/k row order,
    which this rotation (channel ``i`` with ``i + dim // 2``) matches.

    Args:
        dim (int): per-head embedding size (``head_dim``); must be even.
        max_seq_len (int): longest position cached. Default 4096.
        base (float): geometric base of the rotation frequencies (``rope_theta``). Default 1e6.
        scale_factor (float): linear position scaling. Default 1.0.

    Raises:
        ValueError: if ``dim`` is odd or ``scale_factor`` is not positive.
    """

    def __init__(self, dim: int, max_seq_len: int = 4096, base: float = 1_000_000.0,
                 scale_factor: float = 1.0) -> None:
        if scale_factor <= 0:
            raise ValueError(f"scale_factor must be positive, got {scale_factor}")
        # Read by rope_init, which the parent's constructor calls.
        self.scale_factor = scale_factor
        super().__init__(dim, max_seq_len=max_seq_len, base=base)

    def rope_init(self) -> None:
        """(Re)compute the scaled frequencies (buffer ``theta``, ``[dim // 2]``) and the cos/sin cache."""
        theta = 1.0 / (self.base ** (torch.arange(0, self.dim, 2)[: self.dim // 2].float() / self.dim))
        self.register_buffer("theta", theta / self.scale_factor, persistent=False)
        self.build_rope_cache(self.max_seq_len)
