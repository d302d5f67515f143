"""Llama 3 against ``transformers``: plain RoPE with base 500000, untied output, GQA."""

import pytest

from tests.torchtune.models.llama3 import hf_reference as hf
from torchtune.models.llama3 import llama3

MODEL_TYPE = "LLAMA3"


def _llama3(scale_factor=1, **kwargs):
    # rope_settings_from_hf_config returns scale_factor=1 for unscaled RoPE; llama3 has no scaling.
    assert scale_factor == 1
    return llama3(**kwargs)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llama3") / "hf"
    return hf.save_reference(folder, rope_scaling=None, tie=False), folder


def test_logits_match_transformers(reference, tmp_path):
    ref, folder = reference
    ours = hf.load_ours(folder, _llama3, MODEL_TYPE, tmp_path)
    assert hf.max_logit_error(ours, ref, hf.tokens()) < 1e-5


def test_saved_output_loads_strictly_in_transformers(reference, tmp_path):
    ref, folder = reference
    ours = hf.load_ours(folder, _llama3, MODEL_TYPE, tmp_path)
    back = hf.saved_output_loads_strictly(ours, folder, MODEL_TYPE, tmp_path / "out")
    assert hf.max_logit_error(back, ref, hf.tokens()) < 1e-5


def test_kv_cache_decoding_equals_full_forward(reference, tmp_path):
    _, folder = reference
    ours = hf.load_ours(folder, _llama3, MODEL_TYPE, tmp_path)
    assert hf.kv_cache_error(ours, hf.tokens()) < 1e-5


def test_meta_checkpoint_loads(reference, tmp_path):
    ref, _ = reference
    hf.write_meta_checkpoint(ref, tmp_path / "original")
    ours = hf.load_meta(tmp_path / "original", llama3(**hf.TINY), MODEL_TYPE, tmp_path / "out")
    assert hf.max_logit_error(ours, ref, hf.tokens()) < 1e-5
