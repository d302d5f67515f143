from typing import Optional

import torch
from torch import nn


class RotaryPositionalEmbeddings(nn.Module):
    """Rotary positional embeddings (RoFormer, Su et al. 2021) on interleaved pairs.

    Channel pairs ``(x[2i], x[2i+1])`` are rotated by ``pos * base**(-2i/dim)``, the layout
    of Meta's Llama checkpoints and of torchtune state dicts.

    Args:
        dim (int): per-head embedding size (``head_dim``); must be even.
        max_seq_len (int): longest position cached. Default 4096.
        base (int): geometric base of the rotation frequencies. Default 10000.
    """

    def __init__(self, dim: int, max_seq_len: int = 4096, base: int = 10_000) -> None:
        super().__init__()
        if dim % 2 != 0:
            raise ValueError(f"RoPE dim (head_dim) must be even, got {dim}")
        self.dim = dim
        self.base = base
        self.max_seq_len = max_seq_len
        self.rope_init()

    def rope_init(self) -> None:
        theta = 1.0 / (self.base ** (torch.arange(0, self.dim, 2)[: self.dim // 2].float() / self.dim))
        self.register_buffer("theta", theta, persistent=False)
        self.build_rope_cache(self.max_seq_len)

    def build_rope_cache(self, max_seq_len: int = 4096) -> None:
        pos = torch.arange(max_seq_len, dtype=self.theta.dtype, device=self.theta.device)
        angles = torch.outer(pos, self.theta)  # [max_seq_len, dim // 2]
        cache = torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)  # [max_seq_len, dim // 2, 2]
        self.register_buffer("cache", cache, persistent=False)

    def forward(self, x: torch.Tensor, *, input_pos: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            x (torch.Tensor): ``[b, s, n_h, h_d]``.
            input_pos (Optional[torch.Tensor]): positions ``[b, s]`` (or ``[s]``); ``arange(s)`` if None.

        Returns:
            torch.Tensor: rotated tensor ``[b, s, n_h, h_d]`` in the dtype of ``x``.

        Raises:
            ValueError: if a position is beyond ``max_seq_len``.
        """
        b, s, n_h, h_d = x.shape
        if input_pos is None:
            if s > self.max_seq_len:
                raise ValueError(f"seq_len ({s}) exceeds the RoPE max_seq_len ({self.max_seq_len})")
            rope = self.cache[:s]  # [s, h_d // 2, 2]
        else:
            rope = self.cache[input_pos]  # [b, s, h_d // 2, 2]
        # Rotating pair (x0, x1) by angle a is the complex product (x0 + i x1) * (cos a + i sin a):
        # one fp32 kernel forward and one backward, instead of a dozen element-wise ops. The
        # cache holds (cos, sin) pairs, so it is viewed as complex without a copy (`.float()`
        # is a no-op unless the model was cast to a lower precision).
        freqs = torch.view_as_complex(rope.float()).view(-1, s, 1, h_d // 2)
        x_complex = torch.view_as_complex(x.float().reshape(b, s, n_h, h_d // 2, 2))
        return torch.view_as_real(x_complex * freqs).flatten(3).type_as(x)
