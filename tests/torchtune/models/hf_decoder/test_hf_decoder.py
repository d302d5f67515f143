"""``hf_decoder``: every covered architecture from its config.json, against transformers.

Each model is a random-init tiny transformers model saved with ``save_pretrained``; ours is
built from the folder's config.json and loaded through ``FullModelHFCheckpointer`` with the
``HF_DECODER`` model type, the code a recipe runs.
"""

import json

import pytest
import torch

from tests.torchtune.models.hf_decoder.conftest import ARCHS, save_hf_model
from torchtune.models import hf_decoder, lora_hf_decoder
from torchtune.models._hf_decoder import UnsupportedConfigError
from torchtune.training import FullModelHFCheckpointer

SEQ = 40  # longer than every tiny sliding window and than phi3's original context (LongRoPE's long factors)


def _load(folder, out, max_seq_len=None):
    ckpt = FullModelHFCheckpointer(checkpoint_dir=str(folder), checkpoint_files=["model.safetensors"],
                                   model_type="HF_DECODER", output_dir=str(out))
    model = hf_decoder(str(folder), max_seq_len=max_seq_len).eval()
    model.load_state_dict(ckpt.load_checkpoint()["model"], strict=True)
    return model, ckpt


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_logits_equal_transformers_and_round_trip_back(arch, tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    reference = save_hf_model(tmp_path / "hf", arch)
    ours, ckpt = _load(tmp_path / "hf", tmp_path / "out")
    tokens = torch.randint(0, 128, (2, SEQ), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference(tokens).logits
        torch.testing.assert_close(ours(tokens), expected, atol=1e-5, rtol=0)

    ckpt.save_checkpoint({"model": ours.state_dict()}, epoch=0)
    saved = load_file(str(tmp_path / "out" / "epoch_0" / "model-00001-of-00001.safetensors"))
    original = load_file(str(tmp_path / "hf" / "model.safetensors"))
    assert set(saved) == set(original)  # strict: no key added, dropped or renamed
    for key in original:
        assert torch.equal(saved[key], original[key]), key
    back = AutoModelForCausalLM.from_pretrained(str(tmp_path / "out" / "epoch_0"), dtype=torch.float32,
                                                attn_implementation="eager").eval()
    with torch.no_grad():
        torch.testing.assert_close(back(tokens).logits, expected, atol=0, rtol=0)


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_kv_cache_decoding_equals_the_full_forward(arch, tmp_path):
    save_hf_model(tmp_path / "hf", arch)
    model, _ = _load(tmp_path / "hf", tmp_path / "out")
    tokens = torch.randint(0, 128, (1, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(tokens)
        model.setup_caches(batch_size=1, dtype=torch.float32, decoder_max_seq_len=32)
        steps = [model(tokens[:, :6])] + [model(tokens[:, i:i + 1], input_pos=torch.tensor([[i]]))
                                          for i in range(6, 24)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("rope", [
    {"rope_type": "linear", "factor": 2.0},
    {"rope_type": "dynamic", "factor": 2.0},
    {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16, "beta_fast": 16, "beta_slow": 2},
    {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
     "original_max_position_embeddings": 16},
])
def test_rope_scaling_types_match_transformers(rope, tmp_path):
    # max_position_embeddings 32 < SEQ: dynamic NTK regrows its base for this sequence.
    reference = save_hf_model(tmp_path / "hf", "llama", max_position_embeddings=32,
                              rope_parameters={"rope_theta": 10000.0, **rope})
    ours, _ = _load(tmp_path / "hf", tmp_path / "out", max_seq_len=64)
    tokens = torch.randint(0, 128, (1, SEQ), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(ours(tokens), reference(tokens).logits, atol=1e-5, rtol=0)


def _config_dir(tmp_path, **values):
    folder = tmp_path / "cfg"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(values))
    return folder


_LLAMA = dict(model_type="llama", vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
              num_attention_heads=2)


@pytest.mark.parametrize("values, key", [
    (dict(model_type="t5", is_encoder_decoder=True, d_model=16), "model_type='t5'"),
    (dict(model_type="bart", is_encoder_decoder=True), "model_type='bart'"),
    (dict(model_type="mamba", hidden_size=16), "model_type='mamba'"),
    (dict(model_type="my_new_arch"), "model_type='my_new_arch'"),
    (dict(_LLAMA, rope_parameters={"rope_type": "su", "rope_theta": 1e4}), "rope_parameters="),
    (dict(_LLAMA, partial_rotary_factor=0.375), "partial_rotary_factor=0.375"),
    (dict(_LLAMA, hidden_act="softsign"), "hidden_act='softsign'"),
    (dict(_LLAMA, vocab_size=None), "'vocab_size' is missing"),
])
def test_unsupported_configs_fail_in_one_line_naming_the_key(values, key, tmp_path):
    folder = _config_dir(tmp_path, **values)
    with pytest.raises(UnsupportedConfigError) as error:
        hf_decoder(str(folder))
    message = str(error.value)
    assert "\n" not in message and key in message and str(folder / "config.json") in message


def test_a_missing_config_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        hf_decoder(str(tmp_path))


@pytest.mark.parametrize("use_dora", [False, True], ids=["lora", "dora"])
def test_lora_variant_loads_the_base_and_starts_as_the_base_model(tmp_path, use_dora):
    save_hf_model(tmp_path / "hf", "starcoder2")
    base, ckpt = _load(tmp_path / "hf", tmp_path / "out")
    lora = lora_hf_decoder(str(tmp_path / "hf"), ["q_proj", "v_proj"], apply_lora_to_mlp=True, lora_rank=4,
                           lora_alpha=8, use_dora=use_dora).eval()
    missing, unexpected = lora.load_state_dict(ckpt.load_checkpoint()["model"], strict=False)
    assert not unexpected and missing and all("lora_" in k or k.endswith("magnitude") for k in missing)
    if use_dora:  # DoRA magnitudes start as the base weights' row norms
        from torchtune.modules.peft import DoRALinear

        for module in lora.modules():
            if isinstance(module, DoRALinear):
                module.initialize_dora_magnitude()
    assert any(k.endswith("mlp.w1.lora_a.weight") for k in missing)  # the non-gated MLP is adapted too
    tokens = torch.randint(0, 128, (1, 12))
    with torch.no_grad():
        torch.testing.assert_close(lora(tokens), base(tokens))


@pytest.mark.parametrize("arch", ["starcoder2", "gemma2"])
def test_lora_adapter_loads_in_peft_with_our_logits(arch, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from torchtune.modules.peft import get_adapter_params
    from torchtune.training import ADAPTER_CONFIG, ADAPTER_KEY

    save_hf_model(tmp_path / "hf", arch)
    _, ckpt = _load(tmp_path / "hf", tmp_path / "out")
    model = lora_hf_decoder(str(tmp_path / "hf"), ["q_proj", "v_proj", "output_proj"], apply_lora_to_mlp=True,
                            lora_rank=4, lora_alpha=8).eval()
    model.load_state_dict(ckpt.load_checkpoint()["model"], strict=False)
    torch.manual_seed(3)
    adapter = {}
    with torch.no_grad():
        for name, p in get_adapter_params(model).items():
            p.normal_(0, 0.2)  # lora_b too: a non-zero update
            adapter[name] = p.detach().clone()
    ckpt.save_checkpoint({ADAPTER_KEY: adapter, ADAPTER_CONFIG: {
        "r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj", "output_proj", "w1", "w2", "w3"]}},
        epoch=0, adapter_only=True)
    base = AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf"), dtype=torch.float32,
                                                attn_implementation="eager")
    peft_model = PeftModel.from_pretrained(base, str(tmp_path / "out" / "epoch_0" / "adapter")).eval()
    tokens = torch.randint(0, 128, (1, 20), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(peft_model(tokens).logits, model(tokens), atol=1e-5, rtol=0)


def test_fused_projections_get_no_peft_adapter(tmp_path, monkeypatch):
    from torchtune.training import ADAPTER_CONFIG, ADAPTER_KEY
    from torchtune.training.checkpointing import _hf_checkpointer

    warnings = []
    monkeypatch.setattr(_hf_checkpointer.log, "warning", warnings.append)
    save_hf_model(tmp_path / "hf", "phi3")
    _, ckpt = _load(tmp_path / "hf", tmp_path / "out")
    adapter = {"layers.0.attn.q_proj.lora_a.weight": torch.zeros(4, 64),
               "layers.0.attn.q_proj.lora_b.weight": torch.zeros(64, 4)}
    ckpt.save_checkpoint({ADAPTER_KEY: adapter, ADAPTER_CONFIG: {"r": 4, "lora_alpha": 8}}, epoch=0, adapter_only=True)
    folder = tmp_path / "out" / "epoch_0" / "adapter"
    assert not (folder / "adapter_config.json").exists() and list(folder.glob("adapter_model.pt"))
    assert any("layers.0.attn.q_proj has no one-to-one module" in w for w in warnings), warnings
