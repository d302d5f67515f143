import pytest
import torch
import torch.nn.functional as F

from torchtune.modules.low_precision import is_nf4
from torchtune.modules.peft import DoRALinear, LoRALinear, get_merged_lora_ckpt

RANK, ALPHA = 4, 8.0


def _trained(layer):
    with torch.no_grad():
        layer.lora_b.weight.normal_(0.0, 0.2)
        if isinstance(layer, DoRALinear):
            layer.magnitude.mul_(torch.empty_like(layer.magnitude).uniform_(0.5, 1.5))
    return layer


@pytest.mark.parametrize("cls", [LoRALinear, DoRALinear], ids=["lora", "dora"])
def test_merged_weight_reproduces_the_adapted_layer(cls):
    layer = _trained(cls(64, 128, RANK, ALPHA)).eval()
    sd = layer.state_dict()
    keys_before = set(sd)
    merged = get_merged_lora_ckpt(sd, rank=RANK, alpha=ALPHA)
    assert set(sd) == keys_before  # input left alone
    assert set(merged) == {"weight"}
    x = torch.randn(6, 64)
    with torch.no_grad():
        torch.testing.assert_close(F.linear(x, merged["weight"]), layer(x), atol=1e-5, rtol=1e-5)


def test_bf16_weights_stay_bf16():
    layer = _trained(LoRALinear(64, 64, RANK, ALPHA)).to(torch.bfloat16)
    merged = get_merged_lora_ckpt({f"a.{k}": v for k, v in layer.state_dict().items()}, RANK, ALPHA)
    assert merged["a.weight"].dtype == torch.bfloat16
    expected = layer.weight.float() + layer.scaling * layer.lora_b.weight.float() @ layer.lora_a.weight.float()
    torch.testing.assert_close(merged["a.weight"], expected.bfloat16(), rtol=0, atol=0)


def test_nf4_base_is_dequantized_before_merging():
    layer = _trained(LoRALinear(64, 128, RANK, ALPHA, quantize_base=True))
    sd = {"weight": layer.weight, "lora_a.weight": layer.lora_a.weight, "lora_b.weight": layer.lora_b.weight,
          "other.weight": layer.weight}
    assert is_nf4(sd["weight"])
    merged = get_merged_lora_ckpt(sd, RANK, ALPHA)
    assert not any(is_nf4(v) for v in merged.values())
    dense = layer.weight.get_original_weight()
    torch.testing.assert_close(merged["other.weight"], dense, rtol=0, atol=0)
    with torch.no_grad():
        expected = dense + layer.scaling * layer.lora_b.weight @ layer.lora_a.weight
    torch.testing.assert_close(merged["weight"], expected)


@pytest.mark.parametrize(
    "sd, pattern",
    [
        ({"lora_a.weight": torch.zeros(2, 4), "lora_b.weight": torch.zeros(4, 2)}, "has no weight"),
        ({"x.weight": torch.zeros(4, 4), "x.lora_a.weight": torch.zeros(2, 4)}, "x.lora_b.weight"),
        ({"x.weight": torch.zeros(4, 4), "x.magnitude": torch.zeros(4)}, "x.magnitude"),
    ],
)
def test_incomplete_adapters_raise(sd, pattern):
    with pytest.raises(KeyError, match=pattern):
        get_merged_lora_ckpt(sd, RANK, ALPHA)
