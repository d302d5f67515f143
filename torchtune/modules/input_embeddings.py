"""What happens to token embeddings before the first layer: absolute positional embeddings,
a post-embedding norm, l2-normalised embeddings and learned memory tokens.

``TransformerDecoder(..., post_embedding=..., memory_tokens=...)`` takes these; with neither,
the decoder is the plain one. Positions are the decoder's ``input_pos`` (the cache position while
decoding, per-document positions in a packed batch).
"""

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


class SinusoidalPositionalEmbedding(nn.Module):
    """Fixed sinusoidal absolute positions (Vaswani et al., 2017) added to the embeddings.

    Position ``p`` gets ``[sin(p w_0), ..., sin(p w_{d/2-1}), cos(p w_0), ..., cos(p w_{d/2-1})]``
    with ``w_i = base ** (-2i / d)``, times ``scale``.

    Args:
        dim (int): model dimension ``d``; must be even.
        max_seq_len (int): positions tabulated.
        base (float): wavelength base. Default 10000.
        scale (float): multiplier of the table (x-transformers' scaled sinusoidal uses
            ``d ** -0.5``). Default 1.0.

    Raises:
        ValueError: if ``dim`` is odd.
    """

    def __init__(self, dim: int, max_seq_len: int, base: float = 10_000.0, scale: float = 1.0) -> None:
        super().__init__()
        if dim % 2 != 0:
            raise ValueError(f"sinusoidal positional embedding needs an even dim, got {dim}")
        self.scale = scale
        freqs = base ** (-torch.arange(0, dim, 2, dtype=torch.float32) / dim)  # [d / 2]
        angles = torch.arange(max_seq_len, dtype=torch.float32)[:, None] * freqs[None]  # [max_seq_len, d / 2]
        self.register_buffer("table", torch.cat([angles.sin(), angles.cos()], dim=-1), persistent=False)

    def forward(self, h: torch.Tensor, *, input_pos: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            h (torch.Tensor): embeddings ``[b, s, d]``.
            input_pos (Optional[torch.Tensor]): positions ``[b, s]``; ``arange(s)`` if None.

        Returns:
            torch.Tensor: ``h`` plus the scaled table rows, ``[b, s, d]``.
        """
        rows = self.table[: h.shape[1]] if input_pos is None else self.table[input_pos]
        return h + (self.scale * rows).to(h.dtype)


class LearnedPositionalEmbedding(nn.Module):
    """Learned absolute positions (GPT-2): one trainable vector per position, added to the embeddings.

    Args:
        max_seq_len (int): positions.
        dim (int): model dimension ``d``.
    """

    def __init__(self, max_seq_len: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(max_seq_len, dim)

    def forward(self, h: torch.Tensor, *, input_pos: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            h (torch.Tensor): embeddings ``[b, s, d]``.
            input_pos (Optional[torch.Tensor]): positions ``[b, s]``; ``arange(s)`` if None.

        Returns:
            torch.Tensor: ``[b, s, d]``.
        """
        if input_pos is None:
            input_pos = torch.arange(h.shape[1], device=h.device)
        return h + self.embedding(input_pos)


class L2NormEmbedding(nn.Embedding):
    """Token embedding whose vectors are l2-normalised on lookup (x-transformers' ``l2norm_embed``).

    The stored table is unnormalised, so a tied output projection uses it as it is.
    """

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """
        Args:
            tokens (torch.Tensor): ids ``[b, s]``.

        Returns:
            torch.Tensor: unit-norm vectors ``[b, s, d]``.
        """
        return F.normalize(super().forward(tokens), dim=-1)


class PostEmbedding(nn.Module):
    """Absolute positional embedding, then a norm, applied to the embedded sequence.

    Args:
        pos_embedding (Optional[nn.Module]): ``(h, input_pos=) -> h`` such as
            :class:`SinusoidalPositionalEmbedding`; skipped if None.
        norm (Optional[nn.Module]): post-embedding norm ``[b, s, d] -> [b, s, d]``; skipped if None.
    """

    def __init__(self, pos_embedding: Optional[nn.Module] = None, norm: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.pos_embedding = pos_embedding
        self.norm = norm

    def forward(self, h: torch.Tensor, *, input_pos: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            h (torch.Tensor): embeddings ``[b, s, d]``.
            input_pos (Optional[torch.Tensor]): positions ``[b, s]``.

        Returns:
            torch.Tensor: ``[b, s, d]``.
        """
        if self.pos_embedding is not None:
            h = self.pos_embedding(h, input_pos=input_pos)
        if self.norm is not None:
            h = self.norm(h)
        return h


class MemoryTokens(nn.Module):
    """Learned memory tokens prepended to every sequence (Burtsev et al., 2020; x-transformers'
    ``num_memory_tokens``).

    The decoder puts them in front of the embedded tokens before the first layer, so every token
    attends to them, and drops their positions before the output, so they have no logits and never
    enter the loss. While decoding with a cache they are written once, at the first call after a
    reset. They occupy positions ``0 .. num_tokens - 1``; the tokens' positions follow. They need a
    causal (not packed) batch: the decoder refuses a mask or ``input_pos`` next to them.

    Args:
        num_tokens (int): memory tokens.
        dim (int): model dimension ``d``.

    Raises:
        ValueError: if ``num_tokens`` is not positive.
    """

    def __init__(self, num_tokens: int, dim: int) -> None:
        super().__init__()
        if num_tokens < 1:
            raise ValueError(f"num_memory_tokens must be positive, got {num_tokens}")
        self.num_tokens = num_tokens
        self.tokens = nn.Parameter(torch.randn(num_tokens, dim) / math.sqrt(dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """
        Args:
            h (torch.Tensor): embedded tokens ``[b, s, d]``.

        Returns:
            torch.Tensor: ``[b, num_tokens + s, d]``.
        """
        memory = self.tokens.to(h.dtype)[None].expand(h.shape[0], -1, -1)
        return torch.cat([memory, h], dim=1)
