import pytest
import torch

from tests.test_utils import TINY_LLAMA
from torchtune.models.convert_weights import meta_to_tune, tune_to_meta
from torchtune.models.llama2 import llama2, llama2_13b, llama2_70b, llama2_7b, scale_hidden_dim_for_mlp


@pytest.mark.parametrize(
    "builder, expected",
    # Published counts (6.74B, 13.0B and 69.0B to three significant figures).
    [(llama2_7b, 6_738_415_616), (llama2_13b, 13_015_864_320), (llama2_70b, 68_976_648_192)],
    ids=["7b", "13b", "70b"],
)
def test_published_parameter_counts(builder, expected):
    with torch.device("meta"):
        model = builder()
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - expected) / expected < 1e-3, n


def test_llama2_mlp_width_rule():
    assert scale_hidden_dim_for_mlp(4096) == 11008
    assert scale_hidden_dim_for_mlp(5120) == 13824


def test_meta_round_trip_is_identity():
    model = llama2(**TINY_LLAMA)
    sd = model.state_dict()
    meta = tune_to_meta(sd)
    assert "layers.0.attention.wq.weight" in meta and "layers.1.feed_forward.w3.weight" in meta
    back = meta_to_tune(meta)
    assert back.keys() == sd.keys()
    for k in sd:
        assert torch.equal(back[k], sd[k])


@pytest.mark.parametrize(
    "kwargs, quantity",
    [
        (dict(embed_dim=66, num_heads=4), "embed_dim"),
        (dict(num_heads=4, num_kv_heads=3), "num_kv_heads"),
    ],
)
def test_bad_dims_raise_naming_the_quantity(kwargs, quantity):
    with pytest.raises(ValueError, match=quantity):
        llama2(**dict(TINY_LLAMA, **kwargs))


def test_too_long_input_raises():
    model = llama2(**dict(TINY_LLAMA, max_seq_len=16))
    with pytest.raises(ValueError, match="max_seq_len"):
        model(torch.zeros(1, 17, dtype=torch.long))
