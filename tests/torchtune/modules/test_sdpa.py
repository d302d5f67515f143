import pytest
import torch
import torch.nn.functional as F

import torchtune.modules._sdpa as sdpa_module
from torchtune.modules._sdpa import _matmul_attention, scaled_dot_product_attention


def _qkv(n_kv, dtype=torch.float32, s=13):
    torch.manual_seed(0)
    q = torch.randn(2, 4, s, 8, dtype=dtype, requires_grad=True)
    k = torch.randn(2, n_kv, s, 8, dtype=dtype, requires_grad=True)
    v = torch.randn(2, n_kv, s, 8, dtype=dtype, requires_grad=True)
    return q, k, v


def _explicit(q, k, v, is_causal):
    """Textbook attention with repeated kv heads, in fp32."""
    q, k, v = q.float(), k.float(), v.float()
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    if is_causal:
        s = q.shape[2]
        scores = scores.masked_fill(~torch.ones(s, s, dtype=torch.bool).tril(), float("-inf"))
    return scores.softmax(-1) @ v


def _with_grads(fn, q, k, v):
    q, k, v = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
    out = fn(q, k, v)
    (out.float() * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
    return out, q.grad, k.grad, v.grad


@pytest.mark.parametrize("n_kv", [4, 2, 1])
@pytest.mark.parametrize("is_causal", [True, False])
def test_matmul_form_matches_explicit_attention_in_fp32(n_kv, is_causal):
    q, k, v = _qkv(n_kv)
    got = _with_grads(lambda *t: _matmul_attention(*t, is_causal), q, k, v)
    expected = _with_grads(lambda *t: _explicit(*t, is_causal), q, k, v)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_bf16_training_on_cpu_uses_the_matmul_form_close_to_fp32(monkeypatch):
    calls = []
    monkeypatch.setattr(sdpa_module, "_matmul_attention", lambda *a: calls.append(1) or _matmul_attention(*a))
    q, k, v = _qkv(2, torch.bfloat16, s=64)
    got = _with_grads(lambda *t: scaled_dot_product_attention(*t, is_causal=True, enable_gqa=True), q, k, v)
    assert calls and got[0].dtype == torch.bfloat16
    expected = _with_grads(lambda *t: _explicit(*t, True), q.float(), k.float(), v.float())
    for a, b in zip(got, expected):
        torch.testing.assert_close(a.float(), b, atol=3e-2, rtol=3e-2)


def test_other_cases_go_to_pytorch_sdpa(monkeypatch):
    def fail(*args):
        raise AssertionError("matmul form used")

    monkeypatch.setattr(sdpa_module, "_matmul_attention", fail)
    q32, k32, v32 = _qkv(2)
    qb, kb, vb = _qkv(2, torch.bfloat16)
    mask = torch.ones(13, 13, dtype=torch.bool).tril()
    cases = [
        ((q32, k32, v32), {}),  # fp32: the fused kernel is faster
        ((qb, kb, vb), {"attn_mask": mask}),  # explicit masks
        ((qb, kb, vb), {"dropout_p": 0.1}),
        ((qb, kb[:, :, :5], vb[:, :, :5]), {}),  # cross-attention / decoding lengths
    ]
    for (q, k, v), kwargs in cases:
        out = scaled_dot_product_attention(q, k, v, enable_gqa=True, **kwargs)
        assert out.shape == q.shape
    with torch.no_grad():  # inference
        scaled_dot_product_attention(qb, kb, vb, is_causal=True, enable_gqa=True)
    monkeypatch.setattr(sdpa_module, "MATMUL_FORM_MAX_SCORES", 100)  # long sequences
    scaled_dot_product_attention(qb, kb, vb, is_causal=True, enable_gqa=True)


def test_dispatch_matches_pytorch_in_fp32():
    q, k, v = _qkv(2)
    torch.testing.assert_close(
        scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True),
        F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True),
    )
