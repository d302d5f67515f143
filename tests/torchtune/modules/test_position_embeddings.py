import pytest
import torch

from torchtune.modules import RotaryPositionalEmbeddings


def _reference_rope(x, pos, base=10_000):
    """Rotate interleaved pairs (x[2i], x[2i+1]) by pos * base**(-2i/d), written out in fp64."""
    d = x.shape[-1]
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)  # [d/2]
    angle = pos.double()[..., None] * theta  # [b, s, d/2]
    cos, sin = angle.cos()[:, :, None], angle.sin()[:, :, None]  # [b, s, 1, d/2]
    x0, x1 = x.double()[..., 0::2], x.double()[..., 1::2]
    out = torch.empty(x.shape, dtype=torch.float64)
    out[..., 0::2] = x0 * cos - x1 * sin
    out[..., 1::2] = x1 * cos + x0 * sin
    return out


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
def test_matches_the_pairwise_rotation(dtype, tol):
    rope = RotaryPositionalEmbeddings(16, max_seq_len=32)
    x = torch.randn(2, 9, 3, 16).to(dtype)
    out = rope(x)
    assert out.dtype == dtype
    expected = _reference_rope(x, torch.arange(9).expand(2, 9))
    torch.testing.assert_close(out.double(), expected, atol=tol, rtol=tol)
    pos = torch.tensor([[3, 4, 5, 6, 7, 8, 9, 10, 11], [0, 1, 2, 0, 1, 2, 3, 4, 5]])
    torch.testing.assert_close(rope(x, input_pos=pos).double(), _reference_rope(x, pos), atol=tol, rtol=tol)


def test_gradient_is_the_inverse_rotation():
    rope = RotaryPositionalEmbeddings(8, max_seq_len=16)
    x = torch.randn(1, 5, 2, 8, requires_grad=True)
    g = torch.randn(1, 5, 2, 8)
    rope(x).backward(g)
    # The rotation is orthogonal: its vector-Jacobian product rotates g back by the same angles.
    torch.testing.assert_close(x.grad.double(), _reference_rope(g, -torch.arange(5)[None]), atol=1e-5, rtol=1e-5)


def test_too_long_sequence_raises():
    with pytest.raises(ValueError, match="max_seq_len"):
        RotaryPositionalEmbeddings(8, max_seq_len=4)(torch.randn(1, 5, 1, 8))
