"""Linear attention against its quadratic form, and its recurrent state against the full forward."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torchtune.modules.linear_attention import LinearAttention, ReluFeatureMap, causal_linear_attention


def _quadratic(phi_q, phi_k, v, eps=1e-6):
    """sum_{j<=i} (phi_q_i . phi_k_j) v_j / sum_{j<=i} phi_q_i . phi_k_j, as one masked [s, s] matrix, fp64."""
    a = (phi_q.double() @ phi_k.double().transpose(-2, -1)).tril()
    return (a @ v.double()) / (a.sum(-1, keepdim=True) + eps)


@pytest.mark.parametrize("chunk_size", [1, 5, 64])
def test_chunked_running_sums_equal_the_quadratic_form(chunk_size):
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 13, 8), torch.randn(2, 3, 13, 8), torch.randn(2, 3, 13, 8)
    phi_q, phi_k = F.elu(q) + 1, F.elu(k) + 1
    out, kv_sum, k_sum = causal_linear_attention(phi_q, phi_k, v, chunk_size=chunk_size)
    torch.testing.assert_close(out.double(), _quadratic(phi_q, phi_k, v), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(k_sum, phi_k.sum(2), atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(kv_sum, phi_k.transpose(-2, -1) @ v, atol=1e-4, rtol=1e-5)


def _linear_attention(n_kv=2, feature_map=None):
    torch.manual_seed(1)
    lin = lambda o: nn.Linear(32, o, bias=False)  # noqa: E731
    return LinearAttention(embed_dim=32, num_heads=4, num_kv_heads=n_kv, head_dim=8, q_proj=lin(32),
                           k_proj=lin(8 * n_kv), v_proj=lin(8 * n_kv), output_proj=lin(32),
                           feature_map=feature_map, chunk_size=4)


@pytest.mark.parametrize("n_kv", [4, 2, 1], ids=["mha", "gqa", "mqa"])
def test_module_equals_quadratic_form_and_decodes_with_its_state(n_kv):
    attn = _linear_attention(n_kv, feature_map=ReluFeatureMap() if n_kv == 1 else None)
    x = torch.randn(2, 11, 32)
    with torch.no_grad():
        full = attn(x)
        phi = attn.feature_map
        q = phi(attn.q_proj(x).view(2, 11, 4, 8)).transpose(1, 2)
        k = phi(attn.k_proj(x).view(2, 11, n_kv, 8)).transpose(1, 2).repeat_interleave(4 // n_kv, 1)
        v = attn.v_proj(x).view(2, 11, n_kv, 8).transpose(1, 2).repeat_interleave(4 // n_kv, 1)
        expected = attn.output_proj(_quadratic(q, k, v).float().transpose(1, 2).reshape(2, 11, 32))
        torch.testing.assert_close(full, expected, atol=1e-5, rtol=1e-5)
        attn.setup_cache(2, torch.float32, max_seq_len=16)
        steps = [attn(x[:, :3], mask=torch.ones(2, 3, 16, dtype=torch.bool))]
        steps += [attn(x[:, i:i + 1]) for i in range(3, 11)]
        assert attn.kv_cache.size == 11
        torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
        attn.reset_cache()
        assert attn.kv_cache.size == 0
        torch.testing.assert_close(attn(x[:, :5]), full[:, :5], atol=1e-5, rtol=1e-5)


def test_refuses_a_packed_mask_during_training():
    attn = _linear_attention()
    with pytest.raises(ValueError, match="packed"):
        attn(torch.randn(1, 4, 32), mask=torch.ones(1, 4, 4, dtype=torch.bool))
