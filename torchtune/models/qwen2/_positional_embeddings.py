from typing import Optional

import torch
from torch import nn


class Qwen2RotaryPositionalEmbeddings(nn.Module):
    """Rotary positional embeddings in the rotate-half layout of Qwen2 (and Hugging Face) checkpoints.

    The two halves of each head are rotated together: channel ``i`` is paired with channel
    ``i + dim // 2`` and the pair is turned by ``pos * base**(-2i/dim)``. Qwen2 state dicts keep
    Hugging Face's q/k row order, so this module (not the interleaved
    :class:`~torchtune.modules.RotaryPositionalEmbeddings`) matches their weights.

    Args:
        dim (int): per-head embedding size (``head_dim``); must be even.
        max_seq_len (int): longest position cached. Default 4096.
        base (float): geometric base of the rotation frequencies (``rope_theta``). Default 1e6.

    Raises:
        ValueError: if ``dim`` is odd.
    """

    def __init__(self, dim: int, max_seq_len: int = 4096, base: float = 1_000_000.0) -> None:
        super().__init__()
        if dim % 2 != 0:
            raise ValueError(f"RoPE dim (head_dim) must be even, got {dim}")
        self.dim = dim
        self.base = base
        self.max_seq_len = max_seq_len
        self.rope_init()

    def rope_init(self):
        """(Re)compute the frequencies and the cache, e.g. after the module left the meta device."""
        theta = 1.0 / (self.base ** (torch.arange(0, self.dim, 2)[: self.dim // 2].float() / self.dim))
        self.register_buffer("theta", theta, persistent=False)
        self.build_rope_cache(self.max_seq_len)

    def build_rope_cache(self, max_seq_len: int = 4096) -> None:
        """Cache ``cos`` and ``sin`` of every position below ``max_seq_len``, ``[max_seq_len, dim, 2]``."""
        pos = torch.arange(max_seq_len, dtype=self.theta.dtype, device=self.theta.device)
        angles = torch.outer(pos, self.theta)  # [max_seq_len, dim // 2]
        angles = torch.cat([angles, angles], dim=-1)  # both halves of a head share one angle
        self.register_buffer("cache", torch.stack([angles.cos(), angles.sin()], dim=-1), persistent=False)

    def forward(self, x: torch.Tensor, input_pos: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            x (torch.Tensor): queries or keys ``[b, s, n_h, h_d]``.
            input_pos (Optional[torch.Tensor]): positions ``[b, s]`` (or ``[s]``); ``arange(s)`` if None.

        Returns:
            torch.Tensor: rotated tensor ``[b, s, n_h, h_d]`` in the dtype of ``x``.

        Raises:
            ValueError: if the sequence is longer than ``max_seq_len`` (without ``input_pos``).
        """
        s = x.shape[1]
        if input_pos is None:
            if s > self.max_seq_len:
                raise ValueError(f"seq_len ({s}) exceeds the RoPE max_seq_len ({self.max_seq_len})")
            rope = self.cache[:s]  # [s, h_d, 2]
        else:
            rope = self.cache[input_pos]  # [b, s, h_d, 2]
        rope = rope.view(-1, s, 1, self.dim, 2)
        cos, sin = rope[..., 0], rope[..., 1]  # [b or 1, s, 1, h_d]
        xf = x.float()
        x1, x2 = xf.chunk(2, dim=-1)
        rotated = torch.cat([-x2, x1], dim=-1)  # the half-turn partner of each channel
        return (xf * cos + rotated * sin).type_as(x)
