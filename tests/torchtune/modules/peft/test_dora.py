import pytest
import torch
import torch.nn.functional as F

from tests.torchtune.modules.peft._reference import peft_linear
from torchtune.modules.low_precision import to_nf4
from torchtune.modules.peft import DoRALinear

IN, OUT, RANK, ALPHA = 64, 128, 4, 8.0


def _trained_like(layer):
    """Perturb the adapter as training would, so every term of the DoRA formula matters."""
    with torch.no_grad():
        layer.lora_b.weight.normal_(0.0, 0.1)
        layer.magnitude.mul_(torch.empty_like(layer.magnitude).uniform_(0.5, 1.5))
    return layer


def test_magnitude_starts_at_the_base_row_norms_so_the_layer_equals_the_base():
    layer = DoRALinear(IN, OUT, RANK, ALPHA)
    assert layer.adapter_params() == ["lora_a.weight", "lora_b.weight", "magnitude"]
    torch.testing.assert_close(layer.magnitude, layer.weight.detach().norm(p=2, dim=1))
    x = torch.randn(3, IN)
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight), atol=1e-5, rtol=1e-5)


def test_initialize_dora_magnitude_follows_loaded_weights_and_is_idempotent():
    layer = DoRALinear(IN, OUT, RANK, ALPHA)
    new = torch.randn(OUT, IN) * 3
    layer.load_state_dict({**layer.state_dict(), "weight": new})
    assert not torch.allclose(layer.magnitude, new.norm(dim=1))
    layer.initialize_dora_magnitude()
    first = layer.magnitude.detach().clone()
    torch.testing.assert_close(first, new.norm(dim=1))
    layer.initialize_dora_magnitude()
    torch.testing.assert_close(layer.magnitude, first, rtol=0, atol=0)


@pytest.mark.parametrize("use_bias", [False, True])
def test_matches_peft_dora_forward_and_backward(use_bias):
    layer = _trained_like(DoRALinear(IN, OUT, RANK, ALPHA, use_bias=use_bias))
    ref = peft_linear(layer, use_dora=True, use_bias=use_bias)
    x = torch.randn(2, 6, IN)
    out, expected = layer(x), ref(x)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    out.square().sum().backward()
    expected.square().sum().backward()
    tol = dict(atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(layer.lora_a.weight.grad, ref.lora_A["default"].weight.grad, **tol)
    torch.testing.assert_close(layer.lora_b.weight.grad, ref.lora_B["default"].weight.grad, **tol)
    torch.testing.assert_close(layer.magnitude.grad, ref.lora_magnitude_vector["default"].weight.grad, **tol)


def test_forward_equals_the_decomposed_weight_formula():
    layer = _trained_like(DoRALinear(IN, OUT, RANK, ALPHA))
    w = layer.weight + layer.scaling * layer.lora_b.weight @ layer.lora_a.weight
    w_dora = layer.magnitude[:, None] * w / w.norm(dim=1, keepdim=True)
    x = torch.randn(5, IN)
    torch.testing.assert_close(layer(x), F.linear(x, w_dora), atol=1e-5, rtol=1e-5)
    layer.disabled = True
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_nf4_base(dtype):
    torch.set_default_dtype(dtype)
    try:
        layer = _trained_like(DoRALinear(IN, OUT, RANK, ALPHA, quantize_base=True))
    finally:
        torch.set_default_dtype(torch.float32)
    dense = layer.weight.get_original_weight().float()
    w = dense + layer.scaling * layer.lora_b.weight.float() @ layer.lora_a.weight.float()
    w_dora = layer.magnitude.float()[:, None] * w / w.norm(dim=1, keepdim=True)
    x = torch.randn(4, IN, dtype=dtype)
    out = layer(x)
    assert out.dtype == dtype
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=5e-2, rtol=3e-2)
    torch.testing.assert_close(out.float(), F.linear(x.float(), w_dora), **tol)
    out.float().sum().backward()
    assert layer.magnitude.grad is not None and layer.lora_a.weight.grad is not None


def test_nf4_magnitude_uses_the_quantized_weight():
    layer = DoRALinear(IN, OUT, RANK, ALPHA, quantize_base=True)
    new = torch.randn(OUT, IN)
    layer.load_state_dict({**layer.state_dict(), "weight": new})
    layer.initialize_dora_magnitude()
    torch.testing.assert_close(layer.magnitude, to_nf4(new).get_original_weight().norm(dim=1))
