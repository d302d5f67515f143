"""Llama 3.1 against ``transformers``: llama3 RoPE scaling (small original context so the
scaling shows at the test length), untied output."""

import pytest
import torch

from tests.torchtune.models.llama3 import hf_reference as hf
from torchtune.models.llama3_1 import Llama3ScaledRoPE, llama3_1

MODEL_TYPE = "LLAMA3"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llama3_1") / "hf"
    return hf.save_reference(folder, rope_scaling=hf.LLAMA3_SCALING, tie=False), folder


def test_logits_match_transformers(reference, tmp_path):
    ref, folder = reference
    ours = hf.load_ours(folder, llama3_1, MODEL_TYPE, tmp_path)
    assert isinstance(ours.layers[0].attn.pos_embeddings, Llama3ScaledRoPE)
    assert hf.max_logit_error(ours, ref, hf.tokens()) < 1e-5


def test_saved_output_loads_strictly_in_transformers(reference, tmp_path):
    ref, folder = reference
    ours = hf.load_ours(folder, llama3_1, MODEL_TYPE, tmp_path)
    back = hf.saved_output_loads_strictly(ours, folder, MODEL_TYPE, tmp_path / "out")
    assert hf.max_logit_error(back, ref, hf.tokens()) < 1e-5


def test_kv_cache_decoding_equals_full_forward(reference, tmp_path):
    _, folder = reference
    ours = hf.load_ours(folder, llama3_1, MODEL_TYPE, tmp_path)
    assert hf.kv_cache_error(ours, hf.tokens()) < 1e-5


def test_meta_checkpoint_round_trip(reference, tmp_path):
    from torchtune.training import FullModelMetaCheckpointer

    ref, _ = reference
    hf.write_meta_checkpoint(ref, tmp_path / "original")
    build = lambda: llama3_1(**hf.TINY, old_context_len=16)  # noqa: E731
    ours = hf.load_meta(tmp_path / "original", build(), MODEL_TYPE, tmp_path / "out")
    assert hf.max_logit_error(ours, ref, hf.tokens()) < 1e-5
    ckpt = FullModelMetaCheckpointer(str(tmp_path / "original"), ["consolidated.00.pth"], MODEL_TYPE,
                                     str(tmp_path / "out"))
    ckpt.save_checkpoint({"model": ours.state_dict()}, epoch=0)
    original = torch.load(tmp_path / "original" / "consolidated.00.pth", weights_only=True)
    saved = torch.load(tmp_path / "out" / "epoch_0" / "consolidated.00.pth", weights_only=True)
    assert saved.keys() == original.keys()
    assert all(torch.equal(saved[k], original[k]) for k in original)
