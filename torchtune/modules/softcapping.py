"""Tanh soft-capping of attention scores and output logits (Gemma 2).

``cap * tanh(x / cap)`` is close to ``x`` for ``|x| << cap`` and bounded by ``cap``; Gemma 2 caps
its attention scores at 50 and its logits at 30. Capped attention scores cannot go through
``F.scaled_dot_product_attention`` (there is no hook between the score and the softmax), so
:func:`softcapped_attention` writes the attention out in matmuls.
"""

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


def tanh_softcap(x: torch.Tensor, cap: float) -> torch.Tensor:
    """``cap * tanh(x / cap)``, element-wise, in the dtype of ``x``.

    Args:
        x (torch.Tensor): any shape.
        cap (float): the bound, positive.

    Returns:
        torch.Tensor: same shape and dtype as ``x``, every value in ``(-cap, cap)``.
    """
    return torch.tanh(x / cap) * cap


def softcapped_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    softcap: float,
    scale: Optional[float] = None,
    attn_mask: Optional[torch.Tensor] = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Attention whose scores are soft-capped before masking and softmax: ``softmax(cap * tanh(s / cap)) v``.

    Grouped keys/values are used without copying them: the query heads that share a kv head are
    a separate axis (query head ``h`` reads kv head ``h // (n_h // n_kv)``, as in SDPA with
    ``enable_gqa``). The softmax runs in fp32.

    Args:
        q (torch.Tensor): ``[b, n_h, s_q, h_d]``.
        k (torch.Tensor): ``[b, n_kv, s_kv, h_d]``; ``n_kv`` divides ``n_h``.
        v (torch.Tensor): ``[b, n_kv, s_kv, h_d]``.
        softcap (float): the cap of the scores (Gemma 2: ``attn_logit_softcapping``, 50).
        scale (Optional[float]): multiplier of ``q k^T`` before capping; ``h_d ** -0.5`` if None.
        attn_mask (Optional[torch.Tensor]): boolean (True = attend) or additive, broadcastable
            to ``[b, n_h, s_q, s_kv]``. Default None.
        is_causal (bool): causal mask (query ``i`` sees keys ``<= i``) when ``attn_mask`` is None.
        dropout_p (float): dropout on the attention weights. Default 0.0.

    Returns:
        torch.Tensor: ``[b, n_h, s_q, h_d]``.

    Raises:
        ValueError: if ``n_kv`` does not divide ``n_h``.
    """
    b, n_h, s_q, h_d = q.shape
    n_kv, s_kv = k.shape[1], k.shape[2]
    if n_h % n_kv != 0:
        raise ValueError(f"{n_h} query heads cannot share {n_kv} key/value heads")
    group = n_h // n_kv
    scale = h_d**-0.5 if scale is None else scale
    q = q.view(b, n_kv, group, s_q, h_d)
    scores = torch.matmul(q, k.unsqueeze(2).transpose(-1, -2)) * scale  # [b, n_kv, g, s_q, s_kv]
    scores = tanh_softcap(scores, softcap)
    if attn_mask is None and is_causal:
        attn_mask = torch.ones(s_q, s_kv, dtype=torch.bool, device=q.device).tril()
    if attn_mask is not None:
        if attn_mask.dim() == 4:  # [b or 1, n_h or 1, s_q, s_kv] -> the grouped head axes
            if attn_mask.shape[1] == 1:
                attn_mask = attn_mask.unsqueeze(2)
            else:
                attn_mask = attn_mask.reshape(attn_mask.shape[0], n_kv, group, s_q, s_kv)
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask
    probs = torch.softmax(scores.float(), dim=-1).to(q.dtype)
    if dropout_p > 0.0:
        probs = F.dropout(probs, p=dropout_p)
    out = torch.matmul(probs, v.unsqueeze(2))  # [b, n_kv, g, s_q, h_d]
    return out.reshape(b, n_h, s_q, h_d)


class TanhSoftCapping(nn.Module):
    """Module form of :func:`tanh_softcap`, ``[...] -> [...]``.

    Args:
        capping_value (float): the bound (Gemma 2's ``final_logit_softcapping``: 30).

    Raises:
        ValueError: if ``capping_value`` is not positive.
    """

    def __init__(self, capping_value: float) -> None:
        super().__init__()
        if capping_value <= 0:
            raise ValueError(f"capping_value must be positive, got {capping_value}")
        self.capping_value = capping_value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x (torch.Tensor): any shape, e.g. logits ``[b, s, v]``.

        Returns:
            torch.Tensor: ``capping_value * tanh(x / capping_value)``, same shape.
        """
        return tanh_softcap(x, self.capping_value)
