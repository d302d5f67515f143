"""Scaled dot-product attention: PyTorch's fused kernels, or on CPU, for short bf16 training
sequences, the same maths as two batched matmuls.

Why: on CPU, the backward of PyTorch's fused (flash) attention kernel in bf16 is slower than in
fp32 and about twice as slow as autograd through ``softmax(q k^T) v`` written with batched
matmuls (measured on AVX-512-bf16 cores for sequences of a few hundred tokens; see
docs/performance.md). The matmul form materialises the ``[b, h, s_q, s_kv]`` probabilities for
backward, so it is used only when those stay small (``MATMUL_FORM_MAX_SCORES`` elements per call);
everything else (CUDA, fp32, inference, dropout, long sequences) goes to
``F.scaled_dot_product_attention`` unchanged. Numerics are those of eager attention in
transformers: scores are rounded to bf16 before an fp32-accumulated softmax.
"""

from typing import Optional

import torch
import torch.nn.functional as F

# Largest b * h * s_q * s_kv sent to the matmul form (16 MiB of bf16 probabilities per layer).
MATMUL_FORM_MAX_SCORES = 1 << 23


def _use_matmul_form(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: Optional[torch.Tensor], dropout_p: float
) -> bool:
    return (
        attn_mask is None  # masks may hide whole rows, which the fused kernels handle specially
        and q.shape[2] == k.shape[2]  # self-attention over the whole sequence (training)
        and q.device.type == "cpu"
        and q.dtype in (torch.bfloat16, torch.float16)
        and dropout_p == 0.0
        and torch.is_grad_enabled()
        and (q.requires_grad or k.requires_grad or v.requires_grad)
        and q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2] <= MATMUL_FORM_MAX_SCORES
        and not torch.compiler.is_compiling()  # leave the fused op to the compiler
    )


def _matmul_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, is_causal: bool, scale: Optional[float] = None
) -> torch.Tensor:
    b, n_h, s, h_d = q.shape
    n_kv = k.shape[1]
    group = n_h // n_kv
    # Queries sharing a kv head are stacked along the sequence: one [g * s, s] score block per kv
    # head, and k, v are used once (GQA without repeating them).
    q = q.reshape(b * n_kv, group * s, h_d)
    k = k.reshape(b * n_kv, s, h_d)
    v = v.reshape(b * n_kv, s, h_d)
    # The causal mask enters as an additive -inf bias and the 1/sqrt(h_d) scale as alpha of the
    # same batched matmul: no separate masking or scaling pass over the scores, forward or backward.
    bias = torch.zeros(s, s, dtype=q.dtype, device=q.device)
    if is_causal:
        bias = bias.fill_(float("-inf")).triu_(1)
    scores = torch.baddbmm(bias.repeat(group, 1), q, k.transpose(1, 2), alpha=h_d**-0.5 if scale is None else scale)  # [b * n_kv, g * s, s]
    probs = torch.softmax(scores, dim=-1)  # fp32 accumulation inside, output in q's dtype
    return torch.bmm(probs, v).view(b, n_h, s, h_d)


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    attn_mask: Optional[torch.Tensor] = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    enable_gqa: bool = False,
    scale: Optional[float] = None,
) -> torch.Tensor:
    """Drop-in for ``F.scaled_dot_product_attention``.

    Args:
        q (torch.Tensor): ``[b, n_h, s_q, h_d]``.
        k (torch.Tensor): ``[b, n_kv, s_kv, h_d]``; ``n_h`` must be a multiple of ``n_kv``.
        v (torch.Tensor): ``[b, n_kv, s_kv, h_d]``.
        attn_mask (Optional[torch.Tensor]): as for ``F.scaled_dot_product_attention``. Default None.
        dropout_p (float): attention dropout. Default 0.0.
        is_causal (bool): causal masking (with ``attn_mask`` None). Default False.
        enable_gqa (bool): allow ``n_kv < n_h``. Default False.
        scale (Optional[float]): multiplier of ``q k^T``; ``h_d ** -0.5`` if None (Gemma 2 and 3
            use ``query_pre_attn_scalar ** -0.5``). Default None.

    Returns:
        torch.Tensor: ``[b, n_h, s_q, h_d]``.
    """
    if _use_matmul_form(q, k, v, attn_mask, dropout_p):
        return _matmul_attention(q, k, v, is_causal, scale)
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, enable_gqa=enable_gqa, scale=scale
    )
