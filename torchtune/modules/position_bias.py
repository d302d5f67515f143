"""Relative positional information inside attention: partial RoPE, and additive score biases
(ALiBi, T5's bucketed relative bias).

A bias module maps query and key positions to a per-head additive bias of the attention scores,
``bias(q_pos [b, s_q], k_pos [b, s_kv]) -> [b, n_h, s_q, s_kv]``; ``MultiHeadAttention`` takes one
as ``attn_bias`` and adds it before the softmax (after the ``1/sqrt(h_d)`` scaling). Positions come
from ``input_pos``, so the bias is right while decoding with a KV cache and inside each document
of a packed sequence (whose positions restart at 0).
"""

import math
from typing import List, Optional

import torch
from torch import nn

from torchtune.modules.position_embeddings import RotaryPositionalEmbeddings


class PartialRotaryPositionalEmbeddings(nn.Module):
    """RoPE on the first ``fraction`` of each head's channels; the others pass through unchanged.

    GPT-NeoX, Pythia and Phi-2 rotate a quarter to a half of each head. The rotated channels use
    the interleaved-pair layout of :class:`RotaryPositionalEmbeddings`, with frequencies over the
    rotated width.

    Args:
        dim (int): per-head size ``h_d``.
        fraction (float): share of ``dim`` that is rotated, in ``(0, 1]``.
        max_seq_len (int): longest position cached. Default 4096.
        base (int): geometric base of the rotation frequencies. Default 10000.

    Raises:
        ValueError: if ``fraction`` is outside ``(0, 1]`` or ``dim * fraction`` is not a positive
            even whole number of channels.
    """

    def __init__(self, dim: int, fraction: float, max_seq_len: int = 4096, base: int = 10_000) -> None:
        super().__init__()
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"partial RoPE fraction must be in (0, 1], got {fraction}")
        rotary = dim * fraction
        if abs(rotary - round(rotary)) > 1e-6 or round(rotary) % 2 != 0 or round(rotary) == 0:
            raise ValueError(
                f"partial RoPE fraction {fraction} of head_dim {dim} rotates {rotary:g} channels; "
                "the rotated count must be a positive even integer"
            )
        self.dim = dim
        self.rotary_dim = int(round(rotary))
        self.rope = RotaryPositionalEmbeddings(self.rotary_dim, max_seq_len=max_seq_len, base=base)

    def forward(self, x: torch.Tensor, *, input_pos: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            x (torch.Tensor): ``[b, s, n_h, h_d]``.
            input_pos (Optional[torch.Tensor]): positions ``[b, s]``; ``arange(s)`` if None.

        Returns:
            torch.Tensor: ``[b, s, n_h, h_d]``, the first ``rotary_dim`` channels rotated.
        """
        rotated = self.rope(x[..., : self.rotary_dim], input_pos=input_pos)
        return torch.cat([rotated, x[..., self.rotary_dim :]], dim=-1)


def alibi_slopes(num_heads: int) -> List[float]:
    """ALiBi's per-head slopes (Press et al., 2022).

    For ``n`` a power of two the slopes are the geometric sequence ``2**(-8 (i + 1) / n)``. For
    other counts, the ``p`` slopes of the largest power of two ``p < n`` are followed by every
    other slope of ``2p`` heads, as the paper's reference code does.

    Args:
        num_heads (int): attention heads.

    Returns:
        List[float]: ``num_heads`` slopes, steepest first.
    """
    def geometric(n: int) -> List[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    if num_heads & (num_heads - 1) == 0:
        return geometric(num_heads)
    p = 2 ** math.floor(math.log2(num_heads))
    return geometric(p) + geometric(2 * p)[0::2][: num_heads - p]


class ALiBiPositionBias(nn.Module):
    """Attention with linear biases: head ``h`` adds ``-slope_h * |i - j|`` to the score of query
    position ``i`` and key position ``j``.

    There are no learned parameters and no positional embedding; used without RoPE.

    Args:
        num_heads (int): attention heads (one slope each, see :func:`alibi_slopes`).
    """

    def __init__(self, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.register_buffer("slopes", torch.tensor(alibi_slopes(num_heads)), persistent=False)

    def forward(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
        """
        Args:
            q_pos (torch.Tensor): query positions ``[b, s_q]``.
            k_pos (torch.Tensor): key positions ``[b, s_kv]``.

        Returns:
            torch.Tensor: fp32 bias ``[b, n_h, s_q, s_kv]``.
        """
        distance = (q_pos[:, :, None] - k_pos[:, None, :]).abs().float()  # [b, s_q, s_kv]
        return -self.slopes.float()[None, :, None, None] * distance[:, None]


class T5RelativePositionBias(nn.Module):
    """T5's learned relative position bias: one scalar per head and distance bucket.

    Distances below ``num_buckets / 2`` (``/ 4`` when bidirectional) get a bucket each; longer ones
    share logarithmically wider buckets up to ``max_distance``, beyond which all distances share
    the last bucket. Causal attention only sees keys at or before the query, so ``bidirectional``
    is False by default; an encoder passes True (then keys after the query have buckets of their own).

    Args:
        num_heads (int): attention heads.
        num_buckets (int): buckets per direction set. Default 32.
        max_distance (int): distance from which all keys share the last bucket. Default 128.
        bidirectional (bool): separate buckets for keys after the query. Default False.
    """

    def __init__(
        self, num_heads: int, num_buckets: int = 32, max_distance: int = 128, bidirectional: bool = False
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.bidirectional = bidirectional
        self.relative_attention_bias = nn.Embedding(num_buckets, num_heads)

    def bucket(self, relative_position: torch.Tensor) -> torch.Tensor:
        """Bucket index of each ``key_pos - query_pos`` (any shape, integer) -> same shape, long."""
        num_buckets = self.num_buckets
        buckets = torch.zeros_like(relative_position)
        if self.bidirectional:
            num_buckets //= 2
            buckets = buckets + (relative_position > 0).long() * num_buckets
            distance = relative_position.abs()
        else:
            distance = (-relative_position).clamp(min=0)
        max_exact = num_buckets // 2
        # Log-spaced buckets between max_exact and max_distance; clamp(min=1) only avoids log(0)
        # for the small distances, which take the exact branch anyway.
        log_ratio = torch.log(distance.clamp(min=1).float() / max_exact) / math.log(self.max_distance / max_exact)
        large = (max_exact + (log_ratio * (num_buckets - max_exact)).long()).clamp(max=num_buckets - 1)
        return buckets + torch.where(distance < max_exact, distance, large)

    def forward(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
        """
        Args:
            q_pos (torch.Tensor): query positions ``[b, s_q]``.
            k_pos (torch.Tensor): key positions ``[b, s_kv]``.

        Returns:
            torch.Tensor: bias ``[b, n_h, s_q, s_kv]`` in the embedding's dtype.
        """
        buckets = self.bucket(k_pos[:, None, :] - q_pos[:, :, None])  # [b, s_q, s_kv]
        return self.relative_attention_bias(buckets).permute(0, 3, 1, 2)
