"""Phi-3's rotary embedding: the same frequencies as Llama's, applied to rotate-half channel pairs."""

from typing import Optional

import torch

from torchtune.modules.position_embeddings import RotaryPositionalEmbeddings


class Phi3RotaryPositionalEmbeddings(RotaryPositionalEmbeddings):
    """Rotary positional embeddings on the "rotate-half" channel pairing of Hugging Face checkpoints.

    Channel ``i`` of a head is paired with channel ``i + h_d / 2`` (not with ``i + 1`` as in
    :class:`~torchtune.modules.RotaryPositionalEmbeddings`), and the pair is rotated by
    ``pos * base**(-2i / dim)``. Because the rotation matches the layout the q/k projections were
    trained with, Phi-3 and Phi-4 weights load without permuting rows. Frequencies and the cos/sin
    cache are the parent's.

    Args:
        dim (int): per-head embedding size (``head_dim``); must be even.
        max_seq_len (int): longest position cached. Default 4096.
        base (int): geometric base of the rotation frequencies (``rope_theta``). Default 10000.

    Raises:
        ValueError: if ``dim`` is odd.
    """

    def __init__(self, dim: int, max_seq_len: int = 4096, base: int = 10_000) -> None:
        super().__init__(dim=dim, max_seq_len=max_seq_len, base=base)

    def forward(self, x: torch.Tensor, input_pos: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Rotate queries or keys.

        Args:
            x (torch.Tensor): ``[b, s, n_h, h_d]``.
            input_pos (Optional[torch.Tensor]): positions ``[b, s]`` (or ``[s]``); ``arange(s)`` if None.

        Returns:
            torch.Tensor: rotated tensor ``[b, s, n_h, h_d]`` in the dtype of ``x``.

        Raises:
            ValueError: if the sequence is longer than ``max_seq_len`` (with ``input_pos`` None).
        """
        b, s, n_h, h_d = x.shape
        if input_pos is None:
            if s > self.max_seq_len:
                raise ValueError(f"seq_len ({s}) exceeds the RoPE max_seq_len ({self.max_seq_len})")
            rope = self.cache[:s]  # [s, h_d // 2, 2]
        else:
            rope = self.cache[input_pos]  # [b, s, h_d // 2, 2]
        rope = rope.float().view(-1, s, 1, h_d // 2, 2)
        cos, sin = rope[..., 0], rope[..., 1]  # [b or 1, s, 1, h_d // 2]
        first, second = x.float().chunk(2, dim=-1)  # [b, s, n_h, h_d // 2] each
        rotated = torch.cat([first * cos - second * sin, second * cos + first * sin], dim=-1)
        return rotated.type_as(x)
