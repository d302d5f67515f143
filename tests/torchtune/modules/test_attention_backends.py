"""Attention backends (flex, chunked, math) against PyTorch SDPA, and masks through MultiHeadAttention."""

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torchtune.modules import MultiHeadAttention
from torchtune.modules.attention_backends import ChunkedBackend, FlexBackend, MathBackend, SDPABackend


def _qkv(n_h=4, n_kv=2, s=20, d=8, b=2, grad=False):
    torch.manual_seed(0)
    q = torch.randn(b, n_h, s, d, requires_grad=grad)
    k = torch.randn(b, n_kv, s, d, requires_grad=grad)
    v = torch.randn(b, n_kv, s, d, requires_grad=grad)
    return q, k, v


def _masks(b=2, n_h=4, s=20):
    doc = torch.tensor([[0] * 7 + [1] * 8 + [2] * 5, [0] * 12 + [1] * 8])[:b]
    packed = (doc[:, :, None] == doc[:, None, :]) & torch.ones(s, s, dtype=torch.bool).tril()  # [b, s, s]
    q_i, k_i = torch.arange(s)[:, None], torch.arange(s)[None]
    window = (k_i <= q_i) & (q_i - k_i < 4)  # causal window of 4
    additive = torch.randn(b, n_h, s, s).masked_fill(~packed[:, None], float("-inf"))
    return {"none": None, "packed": packed[:, None], "window": window, "additive": additive}


def _sdpa(q, k, v, mask, is_causal, scale=None):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, scale=scale, enable_gqa=True)


@pytest.mark.parametrize("backend", [MathBackend(), ChunkedBackend(chunk_size=6), SDPABackend()],
                         ids=["math", "chunked", "sdpa"])
@pytest.mark.parametrize("mask_kind", ["none", "packed", "window", "additive"])
def test_backends_equal_pytorch_sdpa_forward_and_backward(backend, mask_kind):
    q, k, v = _qkv(grad=True)
    mask = _masks()[mask_kind]
    is_causal = mask is None
    out = backend(q, k, v, mask=mask, is_causal=is_causal, scale=0.3)
    grads = torch.autograd.grad(out.square().sum(), (q, k, v))
    ref = _sdpa(q, k, v, mask, is_causal, scale=0.3)
    ref_grads = torch.autograd.grad(ref.square().sum(), (q, k, v))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, atol=1e-4, rtol=1e-4)


def test_flex_backend_equals_sdpa_with_block_masks():
    q, k, v = _qkv(s=20)
    backend = FlexBackend()
    masks = _masks()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "flex_attention called without torch.compile" on CPU
        torch.testing.assert_close(backend(q, k, v, is_causal=True), _sdpa(q, k, v, None, True), atol=1e-5, rtol=1e-5)
        # Packed documents with a window of 4 inside each: a boolean block mask.
        packed_window = masks["packed"] & masks["window"]
        torch.testing.assert_close(backend(q, k, v, mask=packed_window), _sdpa(q, k, v, packed_window, False),
                                   atol=1e-5, rtol=1e-5)
        # An additive bias (-inf outside the documents) with soft-capped scores, against the formula.
        out = backend(q, k, v, mask=masks["additive"], softcap=2.0)
    kk, vv = k.repeat_interleave(2, 1), v.repeat_interleave(2, 1)
    scores = 2.0 * torch.tanh((q @ kk.transpose(-2, -1)) / math.sqrt(8) / 2.0) + masks["additive"]
    torch.testing.assert_close(out, torch.softmax(scores, -1) @ vv, atol=1e-5, rtol=1e-5)


def test_math_backend_softcap_equals_the_formula_and_handles_fully_masked_rows():
    q, k, v = _qkv(n_h=2, n_kv=2, s=5)
    mask = torch.ones(5, 5, dtype=torch.bool).tril()
    mask[0] = False  # a row that sees nothing reads zeros
    out = MathBackend()(q, k, v, mask=mask, softcap=1.5)
    scores = 1.5 * torch.tanh((q @ k.transpose(-2, -1)) / math.sqrt(8) / 1.5)
    expected = torch.softmax(scores.masked_fill(~mask, float("-inf")), -1) @ v
    torch.testing.assert_close(out[:, :, 1:], expected[:, :, 1:], atol=1e-5, rtol=1e-5)
    assert torch.equal(out[:, :, 0], torch.zeros_like(out[:, :, 0]))


def test_backends_refuse_dropout_they_cannot_apply():
    q, k, v = _qkv()
    for backend in (ChunkedBackend(4), FlexBackend()):
        with pytest.raises(ValueError, match="dropout"):
            backend(q, k, v, is_causal=True, dropout_p=0.1)


def _mha(backend=None, sliding_window=None, n_kv=2, dropout=0.0):
    torch.manual_seed(1)
    lin = lambda o: nn.Linear(32, o, bias=False)  # noqa: E731
    return MultiHeadAttention(embed_dim=32, num_heads=4, num_kv_heads=n_kv, head_dim=8, q_proj=lin(32),
                              k_proj=lin(8 * n_kv), v_proj=lin(8 * n_kv), output_proj=lin(32), backend=backend,
                              sliding_window=sliding_window, attn_dropout=dropout)


@pytest.mark.parametrize("n_kv, backends", [(4, ("sdpa", "math", "chunked")), (2, ("sdpa",)), (1, ("sdpa",))],
                         ids=["mha", "gqa", "mqa"])
def test_sliding_window_never_attends_outside_its_window(n_kv, backends):
    # The output at position i must not change when a token at or before i - window changes.
    window = 3
    for name in backends:
        attn = _mha({"sdpa": None, "math": MathBackend(), "chunked": ChunkedBackend(5)}[name], window, n_kv)
        x = torch.randn(1, 10, 32)
        out = attn(x)
        for far in (0, 3, 6):
            x2 = x.clone()
            x2[0, far] = torch.randn(32)
            out2 = attn(x2)
            torch.testing.assert_close(out2[0, far + window:], out[0, far + window:], atol=1e-6, rtol=1e-6)
            assert not torch.allclose(out2[0, far:far + window], out[0, far:far + window])


def test_attention_dropout_is_applied_in_training_only():
    attn = _mha(MathBackend(), dropout=0.5)
    x = torch.randn(2, 10, 32)
    attn.eval()
    torch.testing.assert_close(attn(x), _mha(MathBackend())(x))  # same seed, same weights
    attn.train()
    torch.manual_seed(3)
    a = attn(x)
    torch.manual_seed(4)
    assert not torch.allclose(a, attn(x))
