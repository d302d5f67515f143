import pytest
import torch
import torch.nn.functional as F

from torchtune.modules.low_precision import FrozenNF4Linear, dequantize, is_nf4, to_nf4


def _nf4_nbytes(t):
    names, _ = t.__tensor_flatten__()
    return sum(getattr(t, n).nbytes for n in names)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_forward_backward_match_dequantized_weight(dtype):
    layer = FrozenNF4Linear(128, 64, bias=True, dtype=dtype)
    assert is_nf4(layer.weight) and not layer.weight.requires_grad and not layer.bias.requires_grad
    dense = layer.weight.get_original_weight()
    x = torch.randn(3, 128, dtype=dtype, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    out = layer(x)
    expected = F.linear(x_ref, dense, layer.bias)
    assert out.dtype == dtype
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=3e-2, rtol=2e-2)
    torch.testing.assert_close(out, expected, **tol)
    out.sum().backward()
    expected.sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, **tol)


def test_quantization_error_is_small_and_memory_is_about_a_quarter_of_bf16():
    w = torch.randn(256, 256, dtype=torch.bfloat16)
    q = to_nf4(w)
    assert q.block_size == 64 and q.scaler_block_size == 256  # torchao defaults where they fit
    rel = (dequantize(q).float() - w.float()).norm() / w.float().norm()
    assert rel < 0.12  # 16 levels fitted to a normal distribution
    assert _nf4_nbytes(q) < 0.27 * w.nbytes


def test_small_layers_get_a_smaller_scaler_block():
    q = to_nf4(torch.randn(64, 64))  # 64 blocks of 64: fewer than torchao's 256 scalers per block
    assert q.scaler_block_size == 64
    layer = FrozenNF4Linear(48, 16)  # 12 blocks
    assert layer.weight.scaler_block_size == 12


@pytest.mark.parametrize("shape, pattern", [((10, 10), "multiple of 64"), ((64,), "2-D")])
def test_bad_shapes_raise(shape, pattern):
    with pytest.raises(ValueError, match=pattern):
        to_nf4(torch.randn(*shape))


def test_state_dict_round_trip_is_dense():
    layer = FrozenNF4Linear(64, 128)
    w = torch.randn(128, 64)
    layer.load_state_dict({"weight": w})
    sd = layer.state_dict()
    assert not is_nf4(sd["weight"]) and sd["weight"].dtype == torch.float32
    torch.testing.assert_close(sd["weight"], to_nf4(w).get_original_weight(), rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="size mismatch"):
        layer.load_state_dict({"weight": torch.randn(64, 64)})


def test_dequantize_passes_dense_tensors_through():
    t = torch.randn(3)
    assert dequantize(t) is t and not is_nf4(t)


def test_quantization_kwargs_set_the_block_sizes_also_when_loading():
    layer = FrozenNF4Linear(64, 64, block_size=32, scaler_block_size=8)
    assert (layer.weight.block_size, layer.weight.scaler_block_size) == (32, 8)
    dense = torch.randn(64, 64)
    layer.load_state_dict({"weight": dense})
    assert (layer.weight.block_size, layer.weight.scaler_block_size) == (32, 8)
    # Smaller blocks quantize more finely than torchao's 64.
    fine = (dequantize(layer.weight) - dense).abs().mean()
    coarse = (dequantize(to_nf4(dense)) - dense).abs().mean()
    assert fine < coarse
    torch.testing.assert_close(layer(input=torch.eye(64)), dequantize(layer.weight).t())
    with pytest.raises(TypeError, match="unknown quantization_kwargs \\['group'\\]"):
        FrozenNF4Linear(64, 64, group=2)
