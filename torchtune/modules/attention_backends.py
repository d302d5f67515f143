"""Interchangeable implementations of the attention core ``softmax(q k^T * scale + mask) v``.

``MultiHeadAttention(..., backend=...)`` calls one of these after projecting, normalising and
rotating q and k. All take the same arguments and compute the same function, so a backend is a
choice of speed and memory, never of maths:

- :class:`SDPABackend`: ``F.scaled_dot_product_attention`` (PyTorch's fused kernels), the default.
- :class:`MathBackend`: the formula written out, for checking the others.
- :class:`ChunkedBackend`: queries in chunks, so only ``[b, n_h, chunk, s_kv]`` scores exist at
  a time (recomputed in backward, not stored, when training).
- :class:`FlexBackend`: ``torch.nn.attention.flex_attention`` with a block mask, which skips blocks
  that are fully masked (packed documents, sliding windows). On CPU, torch 2.13 runs it forward
  only; training with it needs CUDA.

Arguments shared by every backend's ``__call__``:
    q ``[b, n_h, s_q, h_d]``; k, v ``[b, n_kv, s_kv, h_d]`` with ``n_h`` a multiple of ``n_kv``
    (query head ``h`` reads kv head ``h // (n_h / n_kv)``); ``mask``: None, a boolean mask (True =
    attend) or an additive float mask, broadcastable to ``[b, n_h, s_q, s_kv]``; ``is_causal``
    (only with ``mask`` None and ``s_q == s_kv``); ``dropout_p``; ``scale`` (default
    ``1/sqrt(h_d)``); ``softcap``: if set, scores become ``softcap * tanh(scores / softcap)``
    before the mask is added (Gemma 2). The result is ``[b, n_h, s_q, h_d]``.
"""

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from torchtune.modules._sdpa import scaled_dot_product_attention
from torchtune.modules.softcapping import softcapped_attention, tanh_softcap


def _additive(mask: Optional[torch.Tensor], dtype: torch.dtype) -> Optional[torch.Tensor]:
    """A boolean mask as 0 / -inf, a float mask unchanged."""
    if mask is None or mask.dtype != torch.bool:
        return mask
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, float("-inf"))


def math_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: Optional[torch.Tensor] = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    scale: Optional[float] = None,
    softcap: Optional[float] = None,
    q_offset: int = 0,
) -> torch.Tensor:
    """The attention formula in plain tensor ops (see the module docstring for the arguments).

    ``q_offset`` is the key index of the first query, used by ``is_causal`` (a chunk of queries
    that starts later in the sequence). Rows with no visible key return zeros.
    """
    group = q.shape[1] // k.shape[1]
    if group > 1:
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = (q @ k.transpose(-2, -1)).float() * scale  # [b, n_h, s_q, s_kv]
    if softcap is not None:
        scores = tanh_softcap(scores, softcap)
    if is_causal:
        q_idx = torch.arange(q_offset, q_offset + q.shape[2], device=q.device)[:, None]
        scores = scores.masked_fill(torch.arange(k.shape[2], device=q.device)[None, :] > q_idx, float("-inf"))
    if mask is not None:
        scores = scores + _additive(mask, scores.dtype)
    probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # fully masked rows: 0 instead of NaN
    if dropout_p > 0.0:
        probs = F.dropout(probs, p=dropout_p)
    return (probs.to(v.dtype) @ v).to(q.dtype)


class SDPABackend(nn.Module):
    """PyTorch's ``scaled_dot_product_attention`` (fused flash / memory-efficient / math kernels).

    Soft-capping cannot be expressed there; with ``softcap`` set it computes
    :func:`~torchtune.modules.softcapping.softcapped_attention` instead, as ``MultiHeadAttention``
    does without a backend.
    """

    def forward(self, q, k, v, *, mask=None, is_causal=False, dropout_p=0.0, scale=None, softcap=None):
        if softcap is not None:
            return softcapped_attention(q, k, v, softcap=softcap, scale=scale, attn_mask=mask, is_causal=is_causal,
                                        dropout_p=dropout_p)
        # Our dispatcher: PyTorch's fused kernels, or the bf16 CPU training fast path.
        return scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal,
                                            enable_gqa=q.shape[1] != k.shape[1], scale=scale)


class MathBackend(nn.Module):
    """:func:`math_attention`: every score materialised, fp32 softmax. For checking and debugging."""

    def forward(self, q, k, v, *, mask=None, is_causal=False, dropout_p=0.0, scale=None, softcap=None):
        return math_attention(q, k, v, mask=mask, is_causal=is_causal, dropout_p=dropout_p, scale=scale,
                              softcap=softcap)


class ChunkedBackend(nn.Module):
    """Memory-efficient attention: queries in chunks of ``chunk_size``.

    Each chunk attends to every key, so the result equals full attention, but only one chunk's
    ``[b, n_h, chunk_size, s_kv]`` scores exist at a time. While training, each chunk is
    recomputed in backward (activation checkpointing) instead of keeping its probabilities, so
    attention memory stays ``O(chunk_size * s_kv)`` per layer. Dropout is not supported (its
    random mask would differ between the forward and the recomputation).

    Args:
        chunk_size (int): queries per chunk. Default 256.

    Raises:
        ValueError: if ``chunk_size`` is not positive.
    """

    def __init__(self, chunk_size: int = 256) -> None:
        super().__init__()
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        self.chunk_size = chunk_size

    def forward(self, q, k, v, *, mask=None, is_causal=False, dropout_p=0.0, scale=None, softcap=None):
        if dropout_p > 0.0:
            raise ValueError("the chunked attention backend does not support attention dropout; use sdpa or math")
        recompute = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
        outs = []
        for start in range(0, q.shape[2], self.chunk_size):
            stop = min(start + self.chunk_size, q.shape[2])
            # A mask that broadcasts over queries (size 1 there) is shared by every chunk.
            chunk_mask = None if mask is None else (mask if mask.shape[-2] == 1 else mask[..., start:stop, :])
            args = (q[:, :, start:stop], k, v, chunk_mask)

            def attend(q_c, k_, v_, m, _start=start):
                return math_attention(q_c, k_, v_, mask=m, is_causal=is_causal, scale=scale, softcap=softcap,
                                      q_offset=_start)

            outs.append(checkpoint(attend, *args, use_reentrant=False) if recompute else attend(*args))
        return torch.cat(outs, dim=2)


class FlexBackend(nn.Module):
    """``flex_attention`` with a ``BlockMask`` built from the mask, and the bias and soft-cap as a
    ``score_mod``.

    Blocks of ``128 x 128`` positions that the mask hides entirely (other documents of a packed
    sequence, keys outside a sliding window) are skipped. Where flex attention is not available in
    the installed torch, building this backend raises. torch 2.13 on CPU runs it without
    ``torch.compile`` and forward only (no backward); on CUDA wrap the model in ``torch.compile``
    to get the fused kernel. Dropout is not supported.

    Raises:
        ImportError: if ``torch.nn.attention.flex_attention`` is missing.
    """

    def __init__(self) -> None:
        super().__init__()
        try:
            from torch.nn.attention.flex_attention import create_block_mask, flex_attention
        except ImportError as e:  # torch < 2.5
            raise ImportError(f"the flex attention backend needs torch >= 2.5 (found {torch.__version__})") from e
        self._create_block_mask = create_block_mask
        self._flex_attention = flex_attention

    def forward(self, q, k, v, *, mask=None, is_causal=False, dropout_p=0.0, scale=None, softcap=None):
        if dropout_p > 0.0:
            raise ValueError("the flex attention backend does not support attention dropout; use sdpa or math")
        b, n_h, s_q, _ = q.shape
        s_kv = k.shape[2]
        bias = None
        if mask is not None:
            while mask.dim() < 4:
                mask = mask[None]
            mask = mask.expand(b, -1, s_q, s_kv)
            if mask.dtype == torch.bool:
                visible = mask
            else:
                bias, visible = mask, torch.isfinite(mask)
            head_index = visible.shape[1] > 1

            def mask_mod(b_i, h_i, q_i, k_i):
                return visible[b_i, h_i if head_index else 0, q_i, k_i]

            block_mask = self._create_block_mask(mask_mod, b, n_h if head_index else None, s_q, s_kv,
                                                 device=q.device)
        elif is_causal:
            block_mask = self._create_block_mask(lambda b_i, h_i, q_i, k_i: q_i >= k_i, None, None, s_q, s_kv,
                                                 device=q.device)
        else:
            block_mask = None
        bias_heads = bias is not None and bias.shape[1] > 1

        def score_mod(score, b_i, h_i, q_i, k_i):
            if softcap is not None:
                score = tanh_softcap(score, softcap)
            if bias is not None:
                score = score + bias[b_i, h_i if bias_heads else 0, q_i, k_i]
            return score

        plain = softcap is None and bias is None
        return self._flex_attention(q, k, v, score_mod=None if plain else score_mod, block_mask=block_mask,
                                    scale=scale, enable_gqa=n_h != k.shape[1])
