from typing import Tuple

import torch
from torch import nn


class KVCache(nn.Module):
    """Static key/value cache for incremental decoding.

    Keys and values are written at the next free positions; the attention mask passed with
    the query decides which cached positions are visible.

    Args:
        batch_size (int): largest batch the cache serves.
        max_seq_len (int): number of positions it holds.
        num_kv_heads (int): key/value heads.
        head_dim (int): per-head size.
        dtype (torch.dtype): storage dtype.
    """

    def __init__(
        self, batch_size: int, max_seq_len: int, num_kv_heads: int, head_dim: int, dtype: torch.dtype
    ) -> None:
        super().__init__()
        shape = (batch_size, num_kv_heads, max_seq_len, head_dim)
        self.register_buffer("k_cache", torch.zeros(shape, dtype=dtype), persistent=False)
        self.register_buffer("v_cache", torch.zeros(shape, dtype=dtype), persistent=False)
        self.register_buffer("cache_pos", torch.arange(0, max_seq_len), persistent=False)
        self.batch_size = batch_size
        self.max_seq_len = max_seq_len

    @property
    def size(self) -> int:
        """Number of positions filled so far."""
        return int(self.cache_pos[0].item())

    def reset(self) -> None:
        """Empty the cache."""
        self.k_cache.zero_()
        self.v_cache.zero_()
        self.cache_pos -= self.cache_pos[0].clone()

    def update(self, k_val: torch.Tensor, v_val: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Write new keys/values and return the whole cache.

        Args:
            k_val (torch.Tensor): ``[b, n_kv, s, h_d]`` new keys.
            v_val (torch.Tensor): ``[b, n_kv, s, h_d]`` new values.

        Returns:
            Tuple[torch.Tensor, torch.Tensor]: keys and values ``[b, n_kv, max_seq_len, h_d]``.

        Raises:
            ValueError: if the batch is larger than the cache's or the cache would overflow.
        """
        bsz, _, seq_len, _ = k_val.shape
        if bsz > self.batch_size:
            raise ValueError(
                f"KVCache was set up for batch_size={self.batch_size} but got a batch of {bsz}; "
                "call setup_caches with a larger batch_size"
            )
        if seq_len > self.max_seq_len - self.size:
            raise ValueError(
                f"KVCache overflow: {self.size} positions filled, {seq_len} more requested, "
                f"max_seq_len={self.max_seq_len}; call reset_caches() or set up a longer cache"
            )
        pos = self.cache_pos[:seq_len]
        self.k_cache[:bsz, :, pos] = k_val
        self.v_cache[:bsz, :, pos] = v_val
        # Advance the write pointer without a host sync.
        self.cache_pos.add_(seq_len)
        return self.k_cache[:bsz], self.v_cache[:bsz]
