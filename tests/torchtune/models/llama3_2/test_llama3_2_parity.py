"""Llama 3.2 (text) against ``transformers``: llama3 RoPE scaling and tied embeddings, loaded and
saved through our checkpointers."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.torchtune.models.llama3 import hf_reference as hf
from torchtune.models.llama3_2 import llama3_2

MODEL_TYPE = "LLAMA3_2"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llama3_2") / "hf"
    return hf.save_reference(folder, rope_scaling=hf.LLAMA3_SCALING, tie=True), folder


def test_tied_checkpoint_has_no_lm_head(reference):
    _, folder = reference
    assert "lm_head.weight" not in load_file(str(folder / "model.safetensors"))


def test_logits_match_transformers(reference, tmp_path):
    ref, folder = reference
    ours = hf.load_ours(folder, llama3_2, MODEL_TYPE, tmp_path)
    assert "output.weight" not in ours.state_dict()
    assert hf.max_logit_error(ours, ref, hf.tokens()) < 1e-5


def test_scaling_matters_at_the_test_length(reference, tmp_path):
    # Without the llama3 frequency scaling the same weights give clearly different logits, so
    # the parity above checks the scaled RoPE.
    ref, folder = reference
    ours = llama3_2(**hf.TINY, rope_base=500_000, scale_factor=1).eval()
    ours.load_state_dict(hf.checkpointer(folder, MODEL_TYPE, tmp_path).load_checkpoint()["model"])
    assert hf.max_logit_error(ours, ref, hf.tokens()) > 1e-2


def test_saved_output_loads_strictly_in_transformers(reference, tmp_path):
    ref, folder = reference
    ours = hf.load_ours(folder, llama3_2, MODEL_TYPE, tmp_path)
    back = hf.saved_output_loads_strictly(ours, folder, MODEL_TYPE, tmp_path / "out")
    assert back.lm_head.weight.data_ptr() == back.model.embed_tokens.weight.data_ptr()
    assert hf.max_logit_error(ours, back, hf.tokens()) < 1e-5


def test_tied_checkpoint_with_lm_head_copy_loads(reference, tmp_path):
    # Some tied checkpoints also store lm_head.weight (a copy of the table); it is dropped on load.
    ref, folder = reference
    sd = load_file(str(folder / "model.safetensors"))
    sd["lm_head.weight"] = sd["model.embed_tokens.weight"].clone()
    copy = tmp_path / "with_head"
    copy.mkdir()
    save_file(sd, str(copy / "model.safetensors"))
    (copy / "config.json").write_text((folder / "config.json").read_text())
    ours = hf.load_ours(copy, llama3_2, MODEL_TYPE, tmp_path / "out")
    assert hf.max_logit_error(ours, ref, hf.tokens()) < 1e-5


def test_transformers4_config_layout(reference, tmp_path):
    # The same model described by a transformers-4 config.json (rope_theta + rope_scaling).
    from transformers import AutoModelForCausalLM

    ref, folder = reference
    config = json.loads((folder / "config.json").read_text())
    params = config.pop("rope_parameters")
    config["rope_theta"] = params.pop("rope_theta")
    config["rope_scaling"] = params
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text(json.dumps(config))
    (old / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    ours = hf.load_ours(old, llama3_2, MODEL_TYPE, tmp_path / "out")
    ref_old = AutoModelForCausalLM.from_pretrained(str(old), dtype=torch.float32).eval()
    assert hf.max_logit_error(ours, ref_old, hf.tokens()) < 1e-5
    assert hf.max_logit_error(ours, ref, hf.tokens()) < 1e-5


def test_kv_cache_decoding_equals_full_forward(reference, tmp_path):
    _, folder = reference
    ours = hf.load_ours(folder, llama3_2, MODEL_TYPE, tmp_path)
    assert hf.kv_cache_error(ours, hf.tokens()) < 1e-5


def test_meta_checkpoint_round_trip(reference, tmp_path):
    from torchtune.training import FullModelMetaCheckpointer

    ref, _ = reference
    hf.write_meta_checkpoint(ref, tmp_path / "original")
    settings = dict(rope_base=500_000, scale_factor=8, old_context_len=16)
    ours = hf.load_meta(tmp_path / "original", llama3_2(**hf.TINY, **settings), MODEL_TYPE, tmp_path / "out")
    assert hf.max_logit_error(ours, ref, hf.tokens()) < 1e-5
    # Saved the way Meta's files are: with output.weight, which loads back into a tied model.
    ckpt = FullModelMetaCheckpointer(str(tmp_path / "original"), ["consolidated.00.pth"], MODEL_TYPE,
                                     str(tmp_path / "out"))
    ckpt.save_checkpoint({"model": ours.state_dict()}, epoch=0)
    saved = torch.load(tmp_path / "out" / "epoch_0" / "consolidated.00.pth", weights_only=True)
    assert torch.equal(saved["output.weight"], saved["tok_embeddings.weight"])
    again = hf.load_meta(tmp_path / "out" / "epoch_0", llama3_2(**hf.TINY, **settings), MODEL_TYPE, tmp_path / "o2")
    assert hf.max_logit_error(again, ref, hf.tokens()) < 1e-5
