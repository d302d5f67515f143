"""Fp32LayerNorm, TanhGate, the packed-sequence masks and the NF4 state-dict hook."""
import functools

import torch
import torch.nn.functional as F

from torchtune.modules import (
    create_block_causal_mask,
    Fp32LayerNorm,
    FrozenNF4Linear,
    packed_block_causal_mask,
    reparametrize_as_dtype_state_dict_post_hook,
    TanhGate,
)
from torchtune.modules.low_precision import dequantize, is_nf4


def test_fp32_layer_norm_computes_in_fp32_and_returns_the_input_dtype():
    norm = Fp32LayerNorm(16, eps=1e-6).bfloat16()
    x = (torch.randn(3, 16) * 50 + 1000).bfloat16()  # large mean: bf16 statistics would be off
    out = norm(x)
    assert out.dtype == torch.bfloat16
    expected = F.layer_norm(x.float(), (16,), norm.weight.float(), norm.bias.float(), 1e-6)
    torch.testing.assert_close(out, expected.bfloat16())


def test_tanh_gate_starts_closed_and_opens_with_its_scale():
    gate = TanhGate()
    x = torch.randn(2, 4)
    assert torch.count_nonzero(gate(x)) == 0
    with torch.no_grad():
        gate.scale.fill_(0.5)
    torch.testing.assert_close(gate(x), x * torch.tanh(torch.tensor(0.5)))


def test_block_causal_masks_from_document_lengths():
    seq_lens = [torch.tensor([2, 1]), torch.tensor([3])]
    expected = torch.zeros(2, 3, 3, dtype=torch.bool)
    expected[0, :2, :2] = torch.ones(2, 2, dtype=torch.bool).tril()
    expected[0, 2, 2] = True
    expected[1] = torch.ones(3, 3, dtype=torch.bool).tril()
    assert torch.equal(create_block_causal_mask(seq_lens), expected)
    assert torch.equal(packed_block_causal_mask(seq_lens), expected)


def test_reparametrize_hook_returns_nf4_weights_dense_in_the_dtype():
    layer = FrozenNF4Linear(64, 64)
    nf4 = layer.weight
    sd = {"weight": nf4, "other": torch.ones(2)}
    reparametrize_as_dtype_state_dict_post_hook(layer, sd, "", {}, dtype=torch.float16)
    assert not is_nf4(sd["weight"]) and sd["weight"].dtype == torch.float16
    torch.testing.assert_close(sd["weight"], dequantize(nf4).half())
    assert torch.equal(sd["other"], torch.ones(2))
    hook = functools.partial(reparametrize_as_dtype_state_dict_post_hook, dtype=torch.bfloat16)
    assert hook(layer, {"weight": nf4}) is None
