"""FullModelHFCheckpointer against `transformers` and `peft`: same logits after load and save."""

import json

import pytest
import torch
from safetensors.torch import load_file

from tests.test_utils import TINY_LLAMA
from torchtune.models.llama2 import llama2
from torchtune.training.checkpointing import (
    ADAPTER_CONFIG,
    ADAPTER_KEY,
    MODEL_KEY,
    FullModelHFCheckpointer,
)

TOKENS = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(1))


def _shards(ckpt_dir):
    return sorted(p.name for p in ckpt_dir.glob("model-*.safetensors"))


def _tune_model(dims):
    return llama2(**{k: dims[k] for k in TINY_LLAMA}).eval()


def _hf_from(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()


@torch.no_grad()
def _logits(model):
    out = model(TOKENS)
    return out.logits if hasattr(out, "logits") else out


def _hf_row_order(n_heads, head_dim):
    """Index that takes HF (rotate-half) rows to interleaved rows: tune[j] = hf[order[j]].

    Written from the RoPE definitions: the interleaved pair (2i, 2i+1) of a head is HF's (i, i + head_dim/2).
    """
    half = torch.arange(head_dim // 2)
    within = torch.stack([half, half + head_dim // 2], dim=1).reshape(-1)
    return torch.cat([within + h * head_dim for h in range(n_heads)])


def _checkpointer(ckpt_dir, out_dir, files=None, **kwargs):
    files = _shards(ckpt_dir) if files is None else files
    return FullModelHFCheckpointer(ckpt_dir, files, "LLAMA2", out_dir, **kwargs)


def test_sharded_load_matches_hf_logits(hf_llama, tmp_path):
    ckpt_dir, hf_model, dims = hf_llama
    assert len(_shards(ckpt_dir)) >= 2
    sd = _checkpointer(ckpt_dir, tmp_path / "out").load_checkpoint()[MODEL_KEY]
    order = _hf_row_order(dims["num_kv_heads"], dims["embed_dim"] // dims["num_heads"])
    assert torch.equal(sd["layers.1.attn.k_proj.weight"], hf_model.model.layers[1].self_attn.k_proj.weight[order])
    model = _tune_model(dims)
    model.load_state_dict(sd, strict=True)
    torch.testing.assert_close(_logits(model), _logits(hf_model), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("form", ["index", "format_dict", "none", "single_name"])
def test_checkpoint_files_forms(hf_llama, tmp_path, form):
    ckpt_dir, _, _ = hf_llama
    n = len(_shards(ckpt_dir))
    files = {
        "index": ["model.safetensors.index.json"],
        "format_dict": {"filename_format": "model-{}-of-{}.safetensors", "max_filename": f"{n:05d}"},
        "none": None,
        "single_name": "model.safetensors.index.json",
    }[form]
    reference = _checkpointer(ckpt_dir, tmp_path / "a").load_checkpoint()[MODEL_KEY]
    sd = FullModelHFCheckpointer(ckpt_dir, files, "LLAMA2", tmp_path / "b").load_checkpoint()[MODEL_KEY]
    assert sd.keys() == reference.keys()
    assert all(torch.equal(sd[k], reference[k]) for k in sd)


def test_bin_checkpoint_loads(tmp_path):
    from tests.test_utils import make_hf_llama

    hf_model, dims = make_hf_llama()
    ckpt_dir = tmp_path / "bin"
    ckpt_dir.mkdir()
    hf_model.config.to_json_file(str(ckpt_dir / "config.json"))
    torch.save(hf_model.state_dict(), ckpt_dir / "pytorch_model.bin")
    sd = _checkpointer(ckpt_dir, tmp_path / "out", files=["pytorch_model.bin"]).load_checkpoint()[MODEL_KEY]
    model = _tune_model(dims)
    model.load_state_dict(sd)
    torch.testing.assert_close(_logits(model), _logits(hf_model), atol=1e-5, rtol=1e-5)


def test_saved_folder_loads_in_transformers_with_same_logits(hf_llama, tmp_path):
    ckpt_dir, _, dims = hf_llama
    out = tmp_path / "out"
    ckpt = _checkpointer(ckpt_dir, out)
    model = _tune_model(dims)
    model.load_state_dict(ckpt.load_checkpoint()[MODEL_KEY])
    with torch.no_grad():  # "training" changed the weights, q/k included
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    written = ckpt.save_checkpoint({MODEL_KEY: model.state_dict()}, epoch=0)
    epoch_dir = out / "epoch_0"
    assert _shards(epoch_dir) == _shards(ckpt_dir)  # same split as the input
    for name in ("model.safetensors.index.json", "config.json", "generation_config.json", "tokenizer_config.json"):
        assert (epoch_dir / name).is_file() and epoch_dir / name in written
    assert not (epoch_dir / "adapter_config.json").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging left behind
    torch.testing.assert_close(_logits(_hf_from(epoch_dir)), _logits(model), atol=1e-5, rtol=1e-5)


def test_bin_output_loads_in_transformers(hf_llama, tmp_path):
    ckpt_dir, hf_model, _ = hf_llama
    out = tmp_path / "out"
    ckpt = _checkpointer(ckpt_dir, out, safe_serialization=False)
    ckpt.save_checkpoint(ckpt.load_checkpoint(), epoch=3)
    assert (out / "epoch_3" / "pytorch_model.bin.index.json").is_file()
    torch.testing.assert_close(_logits(_hf_from(out / "epoch_3")), _logits(hf_model), atol=1e-5, rtol=1e-5)


def _random_adapter(dims, modules=("q_proj", "k_proj", "v_proj"), rank=4, dora=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    head_dim = dims["embed_dim"] // dims["num_heads"]
    out_features = {"q_proj": dims["num_heads"] * head_dim, "k_proj": dims["num_kv_heads"] * head_dim,
                    "v_proj": dims["num_kv_heads"] * head_dim}
    adapter = {}
    for i in range(dims["num_layers"]):
        for m in modules:
            base = f"layers.{i}.attn.{m}"
            adapter[f"{base}.lora_a.weight"] = 0.1 * torch.randn(rank, dims["embed_dim"], generator=g)
            adapter[f"{base}.lora_b.weight"] = 0.1 * torch.randn(out_features[m], rank, generator=g)
            if dora:
                adapter[f"{base}.magnitude"] = 0.5 + torch.rand(out_features[m], generator=g)
    return adapter


def _adapter_config(modules, rank=4, alpha=8.0, dora=False):
    return {"r": rank, "lora_alpha": alpha, "target_modules": list(modules), "peft_type": "LORA", "use_dora": dora}


def test_adapter_only_writes_both_formats_in_adapter_folder(hf_llama, tmp_path):
    ckpt_dir, _, dims = hf_llama
    out = tmp_path / "out"
    adapter = _random_adapter(dims, modules=("q_proj", "v_proj"))
    _checkpointer(ckpt_dir, out).save_checkpoint(
        {ADAPTER_KEY: adapter, ADAPTER_CONFIG: _adapter_config(["q_proj", "v_proj"])}, epoch=1, adapter_only=True
    )
    epoch_dir, adapter_dir = out / "epoch_1", out / "epoch_1" / "adapter"
    assert sorted(p.name for p in epoch_dir.iterdir()) == ["adapter"]
    assert sorted(p.name for p in adapter_dir.iterdir()) == [
        "adapter_config.json", "adapter_model.pt", "adapter_model.safetensors"
    ]
    tune_sd = torch.load(adapter_dir / "adapter_model.pt", weights_only=True)
    assert tune_sd.keys() == adapter.keys() and all(torch.equal(tune_sd[k], adapter[k]) for k in adapter)
    peft_sd = load_file(adapter_dir / "adapter_model.safetensors")
    assert "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" in peft_sd
    assert "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight" in peft_sd
    assert len(peft_sd) == len(adapter)
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert cfg["target_modules"] == ["q_proj", "v_proj"] and cfg["r"] == 4 and cfg["lora_alpha"] == 8.0
    assert cfg["peft_type"] == "LORA" and cfg["base_model_name_or_path"] == str(ckpt_dir.resolve())


@pytest.mark.parametrize("dora", [False, True], ids=["lora", "dora"])
def test_peft_loads_adapter_with_expected_logits(hf_llama, tmp_path, dora):
    from peft import PeftModel

    ckpt_dir, _, dims = hf_llama
    rank, alpha = 4, 8.0
    modules = ("q_proj", "k_proj", "v_proj")
    adapter = _random_adapter(dims, modules=modules, rank=rank, dora=dora)
    out = tmp_path / "out"
    _checkpointer(ckpt_dir, out).save_checkpoint(
        {ADAPTER_KEY: adapter, ADAPTER_CONFIG: _adapter_config(modules, rank, alpha, dora)}, epoch=0, adapter_only=True
    )
    peft_model = PeftModel.from_pretrained(_hf_from(ckpt_dir), str(out / "epoch_0" / "adapter")).eval()

    # Independent expectation: merge W + (alpha/r) B A by hand on HF weights, B rows (and DoRA
    # magnitudes) moved from the interleaved layout to HF's.
    expected = _hf_from(ckpt_dir)
    head_dim = dims["embed_dim"] // dims["num_heads"]
    heads = {"q_proj": dims["num_heads"], "k_proj": dims["num_kv_heads"]}
    with torch.no_grad():
        for i, layer in enumerate(expected.model.layers):
            for m in modules:
                base = f"layers.{i}.attn.{m}"
                b, a = adapter[f"{base}.lora_b.weight"], adapter[f"{base}.lora_a.weight"]
                mag = adapter.get(f"{base}.magnitude")
                if m in heads:
                    order = _hf_row_order(heads[m], head_dim)
                    b_hf = torch.empty_like(b)
                    b_hf[order] = b
                    if mag is not None:
                        mag_hf = torch.empty_like(mag)
                        mag_hf[order] = mag
                        mag = mag_hf
                    b = b_hf
                linear = getattr(layer.self_attn, m)
                merged = linear.weight + (alpha / rank) * b @ a
                if dora:
                    merged = (mag / merged.norm(dim=1))[:, None] * merged
                linear.weight.copy_(merged)
    torch.testing.assert_close(_logits(peft_model), _logits(expected), atol=1e-5, rtol=1e-5)


def test_merged_folder_is_not_double_applied_by_transformers(hf_llama, tmp_path):
    """With peft installed, an adapter_config.json next to merged weights would be applied again."""
    ckpt_dir, hf_model, dims = hf_llama
    out = tmp_path / "out"
    modules = ("q_proj", "v_proj")
    ckpt = _checkpointer(ckpt_dir, out)
    merged = _tune_model(dims)
    merged.load_state_dict(ckpt.load_checkpoint()[MODEL_KEY])
    adapter = _random_adapter(dims, modules=modules)
    with torch.no_grad():
        for key in [k for k in adapter if k.endswith("lora_a.weight")]:
            base = key[: -len(".lora_a.weight")]
            merged.get_parameter(f"{base}.weight").add_(2.0 * adapter[f"{base}.lora_b.weight"] @ adapter[key])
    ckpt.save_checkpoint(
        {MODEL_KEY: merged.state_dict(), ADAPTER_KEY: adapter, ADAPTER_CONFIG: _adapter_config(modules)}, epoch=0
    )
    assert (out / "epoch_0" / "adapter" / "adapter_config.json").is_file()
    torch.testing.assert_close(_logits(_hf_from(out / "epoch_0")), _logits(merged), atol=1e-5, rtol=1e-5)


def test_adapter_without_config_writes_tune_format_only(hf_llama, tmp_path):
    ckpt_dir, _, dims = hf_llama
    out = tmp_path / "out"
    _checkpointer(ckpt_dir, out).save_checkpoint({ADAPTER_KEY: _random_adapter(dims)}, epoch=0, adapter_only=True)
    assert sorted(p.name for p in (out / "epoch_0" / "adapter").iterdir()) == ["adapter_model.pt"]


def test_bad_adapter_config_is_named(hf_llama, tmp_path):
    ckpt_dir, _, dims = hf_llama
    ckpt = _checkpointer(ckpt_dir, tmp_path / "out")
    state = {ADAPTER_KEY: _random_adapter(dims), ADAPTER_CONFIG: _adapter_config(["q_proj", "qproj"])}
    with pytest.raises(ValueError, match="'qproj'"):
        ckpt.save_checkpoint(state, epoch=0, adapter_only=True)
    assert not (tmp_path / "out" / "epoch_0").exists()


def test_unknown_model_type_lists_valid(hf_llama, tmp_path):
    ckpt_dir, _, _ = hf_llama
    with pytest.raises(ValueError, match="LLAMA3_2.*QWEN2|QWEN2.*LLAMA3_2") as info:
        FullModelHFCheckpointer(ckpt_dir, None, "LLAMA9", tmp_path / "out")
    assert "LLAMA9" in str(info.value)


def test_missing_config_json_is_named(hf_llama, tmp_path):
    ckpt_dir, _, _ = hf_llama
    (ckpt_dir / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        _checkpointer(ckpt_dir, tmp_path / "out")


def test_head_dim_comes_from_config(tmp_path):
    """head_dim * num_heads != hidden_size: the q/k row permutation must use config.json's head_dim."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=32, tie_word_embeddings=False)
    hf_model = LlamaForCausalLM(config).eval()
    ckpt_dir = tmp_path / "hd"
    hf_model.save_pretrained(str(ckpt_dir))
    dims = dict(num_heads=4)
    ckpt = FullModelHFCheckpointer(ckpt_dir, None, "LLAMA3", tmp_path / "out")
    sd = ckpt.load_checkpoint()[MODEL_KEY]
    q_hf = hf_model.model.layers[0].self_attn.q_proj.weight
    assert torch.equal(sd["layers.0.attn.q_proj.weight"], q_hf[_hf_row_order(dims["num_heads"], 32)])
    ckpt.save_checkpoint({MODEL_KEY: sd}, epoch=0)
    torch.testing.assert_close(_logits(_hf_from(tmp_path / "out" / "epoch_0")), _logits(hf_model))


# ---- loading errors that name the file ----

def test_missing_shard_is_named(hf_llama, tmp_path):
    ckpt_dir, _, _ = hf_llama
    victim = _shards(ckpt_dir)[1]
    (ckpt_dir / victim).unlink()
    for files in (["model.safetensors.index.json"], _shards(ckpt_dir)[:1] + [victim]):
        with pytest.raises(FileNotFoundError, match=victim):
            _checkpointer(ckpt_dir, tmp_path / "out", files=files).load_checkpoint()


def test_truncated_shard_is_named(hf_llama, tmp_path):
    ckpt_dir, _, _ = hf_llama
    victim = ckpt_dir / _shards(ckpt_dir)[-1]
    victim.write_bytes(victim.read_bytes()[:-100])
    with pytest.raises(ValueError, match=f"{victim.name} is corrupt or truncated"):
        _checkpointer(ckpt_dir, tmp_path / "out").load_checkpoint()


def test_key_listed_in_index_but_absent_is_named(hf_llama, tmp_path):
    ckpt_dir, _, _ = hf_llama
    index_path = ckpt_dir / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"]["model.layers.0.mlp.up_proj.weight"] = _shards(ckpt_dir)[-1]
    index_path.write_text(json.dumps(index))
    with pytest.raises(ValueError, match=r"missing key 'model\.layers\.0\.mlp\.up_proj\.weight'"):
        _checkpointer(ckpt_dir, tmp_path / "out", files=["model.safetensors.index.json"]).load_checkpoint()


def test_unknown_key_names_file_and_key(hf_llama, tmp_path):
    from safetensors.torch import save_file

    ckpt_dir, _, _ = hf_llama
    victim = ckpt_dir / _shards(ckpt_dir)[0]
    sd = load_file(victim)
    sd["model.layers.0.self_attn.sinks"] = torch.zeros(4)
    save_file(sd, victim)
    with pytest.raises(ValueError, match=rf"{victim.name}.*model\.layers\.0\.self_attn\.sinks"):
        _checkpointer(ckpt_dir, tmp_path / "out").load_checkpoint()


def test_wrong_head_count_names_key_and_shape(hf_llama, tmp_path):
    ckpt_dir, _, _ = hf_llama
    config = json.loads((ckpt_dir / "config.json").read_text())
    config["num_attention_heads"] = 3
    (ckpt_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"q_proj\.weight of shape \[64, 64\]"):
        _checkpointer(ckpt_dir, tmp_path / "out").load_checkpoint()
