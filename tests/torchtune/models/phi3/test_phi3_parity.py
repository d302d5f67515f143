"""Phi-3 (and Phi-4's GQA shape) against `transformers`' Phi3ForCausalLM through our FullModelHFCheckpointer."""

import pytest
import torch
from safetensors.torch import load_file

from tests.torchtune.models.hf_parity import (
    decode_step_by_step,
    load_through_checkpointer,
    save_through_checkpointer,
    saved_hf_state_dict,
)
from tests.torchtune.models.phi3.phi3_reference import hf_phi3_config, make_hf_phi3
from torchtune.models.phi3 import lora_phi3, phi3, phi3_hf_to_tune, phi3_tune_to_hf

# (model type, dims): Phi-3 mini is MHA; Phi-4 has a quarter as many kv heads as query heads.
SHAPES = {
    "PHI3_MINI": dict(vocab_size=128, num_layers=2, num_heads=4, num_kv_heads=4, embed_dim=64, intermediate_dim=96,
                      max_seq_len=64, norm_eps=1e-5, rope_base=10_000),
    "PHI4": dict(vocab_size=128, num_layers=2, num_heads=8, num_kv_heads=2, embed_dim=64, intermediate_dim=96,
                 max_seq_len=64, norm_eps=1e-5, rope_base=250_000),
}


def _tokens(seed, vocab_size, batch=2, seq=24):
    return torch.randint(0, vocab_size, (batch, seq), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module", params=sorted(SHAPES))
def loaded(request, tmp_path_factory):
    model_type = request.param
    dims = SHAPES[model_type]
    folder = tmp_path_factory.mktemp(f"{model_type}_hf")
    hf = make_hf_phi3(dims)
    hf.save_pretrained(str(folder))
    _, sd = load_through_checkpointer(folder, model_type, tmp_path_factory.mktemp(f"{model_type}_out"))
    ours = phi3(**dims).eval()
    ours.load_state_dict(sd, strict=True)
    return model_type, dims, folder, hf, sd, ours


def test_fused_projections_are_split_on_load(loaded):
    _, dims, folder, _, sd, _ = loaded
    hf_sd = load_file(str(folder / "model.safetensors"))
    head_dim = dims["embed_dim"] // dims["num_heads"]
    qkv = hf_sd["model.layers.1.self_attn.qkv_proj.weight"]
    assert qkv.shape[0] == (dims["num_heads"] + 2 * dims["num_kv_heads"]) * head_dim
    q_rows, kv_rows = dims["num_heads"] * head_dim, dims["num_kv_heads"] * head_dim
    torch.testing.assert_close(sd["layers.1.attn.k_proj.weight"], qkv[q_rows:q_rows + kv_rows], rtol=0, atol=0)
    gate_up = hf_sd["model.layers.0.mlp.gate_up_proj.weight"]
    torch.testing.assert_close(sd["layers.0.mlp.w3.weight"], gate_up[dims["intermediate_dim"]:], rtol=0, atol=0)


def test_logits_equal_transformers(loaded):
    _, dims, _, hf, _, ours = loaded
    tokens = _tokens(1, dims["vocab_size"])
    with torch.no_grad():
        expected, actual = hf(tokens).logits, ours(tokens)
    assert (actual - expected).abs().max().item() < 1e-5
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


def test_saved_checkpoint_loads_back_in_transformers_strict(loaded, tmp_path):
    from transformers import Phi3ForCausalLM

    model_type, dims, folder, hf, _, ours = loaded
    epoch_dir = save_through_checkpointer(folder, model_type, ours.state_dict(), tmp_path)
    saved = saved_hf_state_dict(epoch_dir)
    assert "model.layers.0.self_attn.qkv_proj.weight" in saved and "model.layers.0.mlp.gate_up_proj.weight" in saved
    fresh = Phi3ForCausalLM(hf_phi3_config(dims)).eval()
    fresh.load_state_dict(saved, strict=True)
    reloaded = Phi3ForCausalLM.from_pretrained(str(epoch_dir)).eval()
    tokens = _tokens(2, dims["vocab_size"])
    with torch.no_grad():
        torch.testing.assert_close(fresh(tokens).logits, hf(tokens).logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(reloaded(tokens).logits, hf(tokens).logits, atol=1e-5, rtol=1e-5)


def test_kv_cache_decoding_equals_the_full_forward(loaded):
    _, dims, _, _, _, ours = loaded
    tokens = _tokens(3, dims["vocab_size"], seq=20)
    with torch.no_grad():
        full = ours(tokens)
        stepwise = decode_step_by_step(ours, tokens, prefill=5)
    torch.testing.assert_close(stepwise, full, atol=1e-5, rtol=1e-5)


def test_lora_phi3_starts_as_the_base_model(loaded):
    _, dims, _, _, sd, ours = loaded
    lora = lora_phi3(["q_proj", "v_proj", "output_proj"], apply_lora_to_mlp=True, apply_lora_to_output=True,
                     **dims, lora_rank=4, lora_alpha=8).eval()
    missing, unexpected = lora.load_state_dict(sd, strict=False)
    assert not unexpected and missing and all("lora_" in k for k in missing)
    tokens = _tokens(4, dims["vocab_size"])
    with torch.no_grad():
        torch.testing.assert_close(lora(tokens), ours(tokens))


def test_public_converters_round_trip(loaded):
    _, dims, folder, _, sd, _ = loaded
    hf_sd = load_file(str(folder / "model.safetensors"))
    converted = phi3_hf_to_tune(hf_sd, num_heads=dims["num_heads"], num_kv_heads=dims["num_kv_heads"],
                                dim=dims["embed_dim"])
    assert converted.keys() == sd.keys()
    back = phi3_tune_to_hf(converted)
    assert back.keys() == hf_sd.keys()
    assert all(torch.equal(back[k], hf_sd[k]) for k in hf_sd)


def test_converters_refuse_inconsistent_inputs():
    qkv = {"model.layers.0.self_attn.qkv_proj.weight": torch.zeros(10, 4)}
    with pytest.raises(ValueError, match="rows"):
        phi3_hf_to_tune(qkv, num_heads=2, num_kv_heads=2, dim=4)  # 2 + 2 * 2 = 6 rows expected
    with pytest.raises(ValueError, match="together"):
        phi3_hf_to_tune(qkv, num_heads=2, num_kv_heads=None, dim=None)
    with pytest.raises(KeyError, match="v_proj"):
        phi3_tune_to_hf({"layers.0.attn.q_proj.weight": torch.zeros(2, 2), "layers.0.attn.k_proj.weight": torch.zeros(2, 2)})
    with pytest.raises(KeyError, match="lora_a"):
        phi3_tune_to_hf({"layers.0.attn.q_proj.lora_a.weight": torch.zeros(2, 2)})


def test_lora_adapter_saves_in_torchtune_format_only_and_says_why(loaded, tmp_path, caplog):
    import logging

    from torchtune.training import ADAPTER_CONFIG, ADAPTER_KEY, MODEL_KEY, FullModelHFCheckpointer

    model_type, dims, folder, _, sd, _ = loaded
    lora = lora_phi3(["q_proj", "v_proj"], apply_lora_to_mlp=True, **dims, lora_rank=4, lora_alpha=8)
    adapter = {k: v for k, v in lora.state_dict().items() if "lora_" in k}
    ckpt = FullModelHFCheckpointer(str(folder), ["model.safetensors"], model_type, str(tmp_path))
    logger = logging.getLogger("torchtune")
    logger.propagate = True  # let caplog see the package logger
    try:
        with caplog.at_level(logging.WARNING, logger="torchtune"):
            ckpt.save_checkpoint({MODEL_KEY: sd, ADAPTER_KEY: adapter, ADAPTER_CONFIG: {
                "r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj", "w1", "w2", "w3"],
                "peft_type": "LORA"}}, epoch=0)
    finally:
        logger.propagate = False
    adapter_dir = tmp_path / "epoch_0" / "adapter"
    assert sorted(p.name for p in adapter_dir.iterdir()) == ["adapter_model.pt"]
    saved = torch.load(adapter_dir / "adapter_model.pt", weights_only=True)
    assert saved.keys() == adapter.keys()
    reasons = [r.getMessage() for r in caplog.records if "PEFT adapter files not written" in r.getMessage()]
    assert len(reasons) == 1 and reasons[0].startswith(f"{model_type} fuses q/k/v and gate/up projections"), reasons
