"""Llama2 against the `transformers` reference: same random weights, same logits."""

import pytest
import torch
from safetensors.torch import load_file

from tests.test_utils import make_hf_llama, save_hf_llama
from torchtune.models.convert_weights import hf_to_tune, tune_to_hf
from torchtune.models.llama2 import llama2


def _build_ours(dims):
    return llama2(
        vocab_size=dims["vocab_size"], num_layers=dims["num_layers"], num_heads=dims["num_heads"],
        num_kv_heads=dims["num_kv_heads"], embed_dim=dims["embed_dim"], max_seq_len=dims["max_seq_len"],
        intermediate_dim=dims["intermediate_dim"], norm_eps=dims["norm_eps"], rope_base=dims["rope_base"],
    ).eval()


@pytest.mark.parametrize("num_kv_heads", [4, 2, 1], ids=["mha", "gqa", "mqa"])
def test_hf_checkpoint_logits_match_reference(tmp_path, num_kv_heads):
    ref, dims = save_hf_llama(tmp_path, num_kv_heads=num_kv_heads)
    hf_sd = load_file(str(tmp_path / "model.safetensors"))
    ours = _build_ours(dims)
    ours.load_state_dict(
        hf_to_tune(hf_sd, num_heads=dims["num_heads"], num_kv_heads=num_kv_heads, dim=dims["embed_dim"]),
        strict=True,
    )
    tokens = torch.randint(0, dims["vocab_size"], (3, 40))
    with torch.no_grad():
        expected = ref(tokens).logits
        actual = ours(tokens)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("num_kv_heads", [4, 2])
def test_tune_to_hf_round_trip_loads_strict(num_kv_heads):
    ref, dims = make_hf_llama(num_kv_heads=num_kv_heads, seed=1)
    ours = _build_ours(dims)
    ours.load_state_dict(hf_to_tune(ref.state_dict(), num_heads=dims["num_heads"],
                                    num_kv_heads=num_kv_heads, dim=dims["embed_dim"]))
    back = tune_to_hf(ours.state_dict(), num_heads=dims["num_heads"], num_kv_heads=num_kv_heads,
                      dim=dims["embed_dim"])
    fresh, _ = make_hf_llama(num_kv_heads=num_kv_heads, seed=2)
    fresh.load_state_dict(back, strict=True)
    tokens = torch.randint(0, dims["vocab_size"], (2, 17))
    with torch.no_grad():
        torch.testing.assert_close(fresh(tokens).logits, ref(tokens).logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours(tokens), ref(tokens).logits, atol=1e-5, rtol=1e-5)
