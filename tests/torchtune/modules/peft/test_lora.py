import math

import pytest
import torch
import torch.nn.functional as F

from tests.torchtune.modules.peft._reference import peft_linear
from torchtune.modules.low_precision import is_nf4, to_nf4
from torchtune.modules.peft import LoRALinear

IN, OUT, RANK, ALPHA = 64, 128, 4, 8.0  # 64 * 128 weights: a valid NF4 block layout


def _randomize_b(layer):
    with torch.no_grad():
        layer.lora_b.weight.normal_(0.0, 0.1)


def test_fresh_layer_equals_base_linear():
    layer = LoRALinear(IN, OUT, RANK, ALPHA)
    x = torch.randn(2, 5, IN)
    assert torch.count_nonzero(layer.lora_b.weight) == 0
    assert torch.count_nonzero(layer.lora_a.weight) > 0
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight), rtol=0, atol=0)


@pytest.mark.parametrize("use_bias", [False, True])
def test_matches_peft_forward_and_backward(use_bias):
    layer = LoRALinear(IN, OUT, RANK, ALPHA, use_bias=use_bias)
    _randomize_b(layer)
    ref = peft_linear(layer, use_dora=False, use_bias=use_bias)
    x = torch.randn(3, 7, IN)
    out, expected = layer(x), ref(x)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    out.square().sum().backward()
    expected.square().sum().backward()
    torch.testing.assert_close(layer.lora_a.weight.grad, ref.lora_A["default"].weight.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(layer.lora_b.weight.grad, ref.lora_B["default"].weight.grad, atol=1e-4, rtol=1e-4)


def test_layout_names_and_scaling():
    layer = LoRALinear(IN, OUT, RANK, ALPHA, use_bias=True)
    assert layer.scaling == ALPHA / RANK
    assert layer.adapter_params() == ["lora_a.weight", "lora_b.weight"]
    shapes = {k: tuple(v.shape) for k, v in layer.state_dict().items()}
    assert shapes == {"weight": (OUT, IN), "bias": (OUT,), "lora_a.weight": (RANK, IN), "lora_b.weight": (OUT, RANK)}


def test_lora_a_init_is_kaiming_uniform_a_sqrt5():
    layer = LoRALinear(1024, 64, 256, 1.0)
    # kaiming_uniform(a=sqrt(5)) draws from U(-b, b) with b = sqrt(6 / ((1 + a^2) * fan_in)) = 1/sqrt(fan_in)
    bound = 1.0 / math.sqrt(1024)
    w = layer.lora_a.weight
    assert w.abs().max() <= bound
    assert w.abs().max() > 0.99 * bound
    torch.testing.assert_close(w.std(), torch.tensor(bound / math.sqrt(3)), atol=2e-4, rtol=0.01)


def test_disabled_returns_base_output():
    layer = LoRALinear(IN, OUT, RANK, ALPHA)
    _randomize_b(layer)
    x = torch.randn(4, IN)
    assert not torch.allclose(layer(x), F.linear(x, layer.weight))
    layer.disabled = True
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight), rtol=0, atol=0)


def test_dropout_applies_to_adapter_input_only():
    layer = LoRALinear(IN, OUT, RANK, ALPHA, dropout=0.5)
    _randomize_b(layer)
    x = torch.randn(8, IN)
    layer.eval()
    expected = F.linear(x, layer.weight) + layer.scaling * (x @ layer.lora_a.weight.T @ layer.lora_b.weight.T)
    torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)
    layer.train()
    torch.manual_seed(1)
    out = layer(x)
    torch.manual_seed(1)
    dropped = F.dropout(x, 0.5, training=True)
    expected = F.linear(x, layer.weight) + layer.scaling * (dropped @ layer.lora_a.weight.T @ layer.lora_b.weight.T)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kwargs, word", [(dict(rank=0), "rank"), (dict(dropout=1.0), "dropout")])
def test_bad_arguments_raise(kwargs, word):
    args = {**dict(in_dim=IN, out_dim=OUT, rank=RANK, alpha=ALPHA), **kwargs}
    with pytest.raises(ValueError, match=word):
        LoRALinear(**args)


def test_bf16_stays_bf16_without_copying_the_base_weight():
    layer = LoRALinear(IN, OUT, RANK, ALPHA).to(torch.bfloat16)
    _randomize_b(layer)
    layer.weight.requires_grad_(False)
    x = torch.randn(2, 3, IN, dtype=torch.bfloat16)
    storage = layer.weight.untyped_storage().data_ptr()
    out = layer(x)
    out.float().sum().backward()
    assert out.dtype == torch.bfloat16
    assert layer.lora_a.weight.grad.dtype == torch.bfloat16
    assert layer.weight.untyped_storage().data_ptr() == storage


# --- QLoRA: NF4 base weight ---


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_nf4_forward_and_backward_match_dequantized_reference(dtype):
    torch.set_default_dtype(dtype)
    try:
        layer = LoRALinear(IN, OUT, RANK, ALPHA, quantize_base=True)
    finally:
        torch.set_default_dtype(torch.float32)
    _randomize_b(layer)
    assert is_nf4(layer.weight) and not layer.weight.requires_grad
    dense = layer.weight.get_original_weight()  # torchao's own dequantization
    assert dense.dtype == dtype
    x = torch.randn(2, 9, IN, dtype=dtype, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    out = layer(x)
    a, b = layer.lora_a.weight.detach().clone().requires_grad_(True), layer.lora_b.weight.detach().clone().requires_grad_(True)
    expected = F.linear(x_ref, dense) + layer.scaling * F.linear(F.linear(x_ref, a), b)
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=3e-2, rtol=2e-2)
    torch.testing.assert_close(out, expected, **tol)
    assert out.dtype == dtype
    out.sum().backward()
    expected.sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, **tol)
    torch.testing.assert_close(layer.lora_a.weight.grad, a.grad, **tol)
    torch.testing.assert_close(layer.lora_b.weight.grad, b.grad, **tol)


def test_nf4_loads_dense_state_dict_and_saves_dense():
    layer = LoRALinear(IN, OUT, RANK, ALPHA, quantize_base=True)
    new_weight = torch.randn(OUT, IN)
    sd = {"weight": new_weight, "lora_a.weight": torch.randn(RANK, IN), "lora_b.weight": torch.randn(OUT, RANK)}
    layer.load_state_dict(sd)
    assert is_nf4(layer.weight)
    assert sd["weight"] is new_weight  # the caller's dict is untouched
    expected = to_nf4(new_weight).get_original_weight()
    torch.testing.assert_close(layer.weight.get_original_weight(), expected, rtol=0, atol=0)
    saved = layer.state_dict()
    assert type(saved["weight"]) is torch.Tensor and saved["weight"].dtype == torch.float32
    torch.testing.assert_close(saved["weight"], expected, rtol=0, atol=0)
    # NF4 keeps the weights close: about 0.1 of the spread of a unit normal
    assert (saved["weight"] - new_weight).abs().mean() < 0.1


def test_nf4_load_with_assign_stays_nf4():
    layer = LoRALinear(IN, OUT, RANK, ALPHA, quantize_base=True)
    sd = {"weight": torch.randn(OUT, IN), "lora_a.weight": torch.randn(RANK, IN), "lora_b.weight": torch.zeros(OUT, RANK)}
    layer.load_state_dict(sd, assign=True)
    assert is_nf4(layer.weight)
    x = torch.randn(3, IN)
    torch.testing.assert_close(layer(x), F.linear(x, to_nf4(sd["weight"]).get_original_weight()), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cls", ["LoRALinear", "DoRALinear"])
def test_quantization_kwargs_reach_the_nf4_base(cls):
    import torchtune.modules.peft as peft

    layer = getattr(peft, cls)(IN, OUT, RANK, ALPHA, quantize_base=True, block_size=32)
    assert is_nf4(layer.weight) and layer.weight.block_size == 32
    with pytest.raises(ValueError, match="need quantize_base=True"):
        getattr(peft, cls)(IN, OUT, RANK, ALPHA, block_size=32)


@pytest.mark.parametrize("cls", ["LoRALinear", "DoRALinear"])
def test_to_empty_materializes_only_the_adapter(cls):
    import torchtune.modules.peft as peft

    with torch.device("meta"):
        layer = getattr(peft, cls)(IN, OUT, RANK, ALPHA)
    assert layer.to_empty(device="cpu") is layer
    adapter = {name for name in layer.adapter_params()}
    for name, p in layer.named_parameters():
        assert p.is_meta == (name not in adapter), name
    layer.initialize_parameters()
    assert torch.count_nonzero(layer.lora_b.weight) == 0
