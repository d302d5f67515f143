"""Causal linear attention (Katharopoulos et al., 2020): a kernel feature map instead of the softmax.

With a feature map ``phi``, query ``i`` reads ``sum_{j<=i} phi(q_i).phi(k_j) v_j / sum_{j<=i}
phi(q_i).phi(k_j)``: the running sums ``S = sum phi(k_j) v_j^T`` ``[h_d, h_d]`` and ``z = sum phi(k_j)``
``[h_d]`` are all a query needs, so decoding keeps that fixed-size state instead of a KV cache.
Training processes the sequence in chunks: exact (masked quadratic) inside a chunk, the running
sums across chunks, so memory is ``O(s * chunk)`` rather than ``O(s^2)`` or ``O(s * h_d^2)``.
"""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn


class EluFeatureMap(nn.Module):
    """``elu(x) + 1``, positive everywhere (the feature map of Katharopoulos et al.)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.elu(x) + 1.0


class ReluFeatureMap(nn.Module):
    """``relu(x)``; rows whose features are all zero read nothing (their denominator is ``eps``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x)


class LinearAttentionState(nn.Module):
    """The recurrent decoding state of :class:`LinearAttention`, in place of a :class:`KVCache`.

    Args:
        batch_size (int): largest batch decoded.
        num_heads (int): heads.
        head_dim (int): per-head size (of the features and the values).
        dtype (torch.dtype): state dtype (fp32 recommended: the sums grow with the sequence).
    """

    def __init__(self, batch_size: int, num_heads: int, head_dim: int, dtype: torch.dtype) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.register_buffer("kv_sum", torch.zeros(batch_size, num_heads, head_dim, head_dim, dtype=dtype),
                             persistent=False)
        self.register_buffer("k_sum", torch.zeros(batch_size, num_heads, head_dim, dtype=dtype), persistent=False)
        self.register_buffer("cache_pos", torch.zeros(1, dtype=torch.long), persistent=False)

    @property
    def size(self) -> int:
        """Number of positions summed so far (the decoder reads it as the cache position)."""
        return int(self.cache_pos.item())

    def reset(self) -> None:
        """Forget the sequence."""
        self.kv_sum.zero_()
        self.k_sum.zero_()
        self.cache_pos.zero_()


def causal_linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    kv_sum: Optional[torch.Tensor] = None,
    k_sum: Optional[torch.Tensor] = None,
    chunk_size: int = 64,
    eps: float = 1e-6,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Causal linear attention of already feature-mapped queries and keys.

    Args:
        q (torch.Tensor): ``phi(q)`` ``[b, h, s, d]``.
        k (torch.Tensor): ``phi(k)`` ``[b, h, s, d]``.
        v (torch.Tensor): values ``[b, h, s, d_v]``.
        kv_sum (Optional[torch.Tensor]): ``sum phi(k) v^T`` of earlier positions ``[b, h, d, d_v]``; zeros if None.
        k_sum (Optional[torch.Tensor]): ``sum phi(k)`` of earlier positions ``[b, h, d]``; zeros if None.
        chunk_size (int): positions per exact block. Default 64.
        eps (float): added to the normaliser. Default 1e-6.

    Returns:
        Tuple[torch.Tensor, torch.Tensor, torch.Tensor]: output ``[b, h, s, d_v]`` and the updated
        ``kv_sum`` and ``k_sum`` (fp32).
    """
    b, h, s, d = q.shape
    q, k, v = q.float(), k.float(), v.float()
    kv_sum = q.new_zeros(b, h, d, v.shape[-1]) if kv_sum is None else kv_sum.float()
    k_sum = q.new_zeros(b, h, d) if k_sum is None else k_sum.float()
    outs = []
    for start in range(0, s, chunk_size):
        q_c, k_c, v_c = (t[:, :, start:start + chunk_size] for t in (q, k, v))
        scores = (q_c @ k_c.transpose(-2, -1)).tril()  # [b, h, n, n], causal inside the chunk
        numerator = scores @ v_c + q_c @ kv_sum  # [b, h, n, d_v]
        denominator = scores.sum(-1) + (q_c * k_sum[:, :, None]).sum(-1)  # [b, h, n]
        outs.append(numerator / (denominator[..., None] + eps))
        kv_sum = kv_sum + k_c.transpose(-2, -1) @ v_c
        k_sum = k_sum + k_c.sum(2)
    return torch.cat(outs, dim=2), kv_sum, k_sum


class LinearAttention(nn.Module):
    """Causal linear-attention mixer, a drop-in for :class:`MultiHeadAttention` in a decoder layer.

    Queries and keys go through ``feature_map`` per head; there is no score matrix, so no
    positional bias and no sliding window; use absolute positions (or none). Grouped keys/values
    (``num_kv_heads < num_heads``) are shared by their query heads. While decoding, the state is a
    :class:`LinearAttentionState` (exposed as ``kv_cache``, so the decoder's cache calls work).

    Args:
        embed_dim (int): model dimension ``d``.
        num_heads (int): query heads.
        num_kv_heads (int): key/value heads; divides ``num_heads``.
        head_dim (int): per-head size.
        q_proj (nn.Module): ``[b, s, d] -> [b, s, num_heads * head_dim]``.
        k_proj (nn.Module): ``[b, s, d] -> [b, s, num_kv_heads * head_dim]``.
        v_proj (nn.Module): ``[b, s, d] -> [b, s, num_kv_heads * head_dim]``.
        output_proj (nn.Module): ``[b, s, num_heads * head_dim] -> [b, s, d]``.
        feature_map (Optional[nn.Module]): ``phi``, element-wise and non-negative; :class:`EluFeatureMap` if None.
        chunk_size (int): positions per exact block in training. Default 64.
        eps (float): normaliser epsilon. Default 1e-6.

    Raises:
        ValueError: if ``num_kv_heads`` does not divide ``num_heads``.
    """

    def __init__(
        self,
        *,
        embed_dim: int,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int,
        q_proj: nn.Module,
        k_proj: nn.Module,
        v_proj: nn.Module,
        output_proj: nn.Module,
        feature_map: Optional[nn.Module] = None,
        chunk_size: int = 64,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if num_heads % num_kv_heads != 0:
            raise ValueError(f"num_heads ({num_heads}) must be divisible by num_kv_heads ({num_kv_heads})")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.q_proj = q_proj
        self.k_proj = k_proj
        self.v_proj = v_proj
        self.output_proj = output_proj
        self.feature_map = feature_map if feature_map is not None else EluFeatureMap()
        self.chunk_size = chunk_size
        self.eps = eps
        self.kv_cache: Optional[LinearAttentionState] = None
        self.cache_enabled = False
        # Read by code that inspects attention modules (window checks); linear attention has none.
        self.sliding_window = None

    def setup_cache(self, batch_size: int, dtype: torch.dtype, max_seq_len: int) -> None:
        """Create the recurrent state (fp32 whatever ``dtype``; ``max_seq_len`` is not needed).

        Args:
            batch_size (int): largest batch to decode.
            dtype (torch.dtype): the model's cache dtype (unused: the sums are kept in fp32).
            max_seq_len (int): unused.
        """
        if self.kv_cache is None:
            self.kv_cache = LinearAttentionState(batch_size, self.num_heads, self.head_dim, torch.float32)
            self.kv_cache.to(next(self.parameters()).device)
        self.cache_enabled = True

    def reset_cache(self) -> None:
        """Empty the recurrent state.

        Raises:
            RuntimeError: if no state was set up.
        """
        if self.kv_cache is None:
            raise RuntimeError("Key value caches are not setup. Call model.setup_caches() first.")
        self.kv_cache.reset()

    def forward(
        self,
        x: torch.Tensor,
        y: Optional[torch.Tensor] = None,
        *,
        mask: Optional[torch.Tensor] = None,
        input_pos: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """
        Args:
            x (torch.Tensor): ``[b, s, d]``.
            y (Optional[torch.Tensor]): must be None or ``x`` (self-attention only).
            mask (Optional[torch.Tensor]): ignored while decoding (the decoder's causal rows);
                otherwise must be None, since the running sums are causal over the whole sequence.
            input_pos (Optional[torch.Tensor]): unused (no positions inside the mixer).

        Returns:
            torch.Tensor: ``[b, s, d]``.

        Raises:
            ValueError: if a mask is given outside decoding (a packed batch) or ``y`` is another tensor.
        """
        if y is not None and y is not x:
            raise ValueError("LinearAttention is self-attention only (y must be None or x)")
        use_cache = self.kv_cache is not None and self.cache_enabled
        if mask is not None and not use_cache:
            raise ValueError("linear attention is causal over the whole sequence and takes no mask; "
                             "packed batches (block-causal masks) are not supported, set dataset.packed=False")
        b, s, _ = x.shape
        group = self.num_heads // self.num_kv_heads
        q = self.feature_map(self.q_proj(x).view(b, s, self.num_heads, self.head_dim)).transpose(1, 2)
        k = self.feature_map(self.k_proj(x).view(b, s, self.num_kv_heads, self.head_dim)).transpose(1, 2)
        v = self.v_proj(x).view(b, s, self.num_kv_heads, self.head_dim).transpose(1, 2)
        if group > 1:
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        if use_cache:
            state = self.kv_cache
            if b > state.batch_size:
                raise ValueError(f"the linear-attention state was set up for batch_size={state.batch_size} "
                                 f"but got a batch of {b}; call setup_caches with a larger batch_size")
            out, kv_sum, k_sum = causal_linear_attention(q, k, v, kv_sum=state.kv_sum[:b], k_sum=state.k_sum[:b],
                                                         chunk_size=self.chunk_size, eps=self.eps)
            state.kv_sum[:b] = kv_sum
            state.k_sum[:b] = k_sum
            state.cache_pos.add_(s)
        else:
            out, _, _ = causal_linear_attention(q, k, v, chunk_size=self.chunk_size, eps=self.eps)
        out = out.to(x.dtype).transpose(1, 2).reshape(b, s, self.num_heads * self.head_dim)
        return self.output_proj(out)
