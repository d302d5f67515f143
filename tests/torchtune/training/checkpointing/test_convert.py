"""Families beyond Llama: Qwen2 (biases, tied embeddings) and Phi-3 (fused projections)."""

import pytest
import torch

from torchtune.training.checkpointing import MODEL_KEY, FullModelHFCheckpointer, ModelType
from torchtune.training.checkpointing._model_type import resolve_model_type

TOKENS = torch.randint(0, 256, (1, 10), generator=torch.Generator().manual_seed(2))
_DIMS = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)


def _save(model, path):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.08)
    model.eval().save_pretrained(str(path), max_shard_size="150KB")
    return model


@torch.no_grad()
def _round_trip_logits(ckpt_dir, model_type, out):
    from transformers import AutoModelForCausalLM

    ckpt = FullModelHFCheckpointer(ckpt_dir, None, model_type, out)
    sd = ckpt.load_checkpoint()[MODEL_KEY]
    ckpt.save_checkpoint({MODEL_KEY: sd}, epoch=0)
    reloaded = AutoModelForCausalLM.from_pretrained(str(out / "epoch_0"), dtype=torch.float32).eval()
    return sd, reloaded(TOKENS).logits


def test_qwen2_biases_tied_embeddings_round_trip(tmp_path):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    hf = _save(Qwen2ForCausalLM(Qwen2Config(**_DIMS, tie_word_embeddings=True)), tmp_path / "in")
    sd, logits = _round_trip_logits(tmp_path / "in", "QWEN2", tmp_path / "out")
    attn = hf.model.layers[1].self_attn
    assert torch.equal(sd["layers.1.attn.k_proj.bias"], attn.k_proj.bias)
    assert torch.equal(sd["layers.1.attn.q_proj.weight"], attn.q_proj.weight)  # rotate-half rows kept
    assert "output.weight" not in sd  # tied to tok_embeddings
    torch.testing.assert_close(logits, hf(TOKENS).logits.detach(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("model_type", ["PHI3_MINI", "PHI4"])
def test_phi3_fused_projections_split_and_rejoin(tmp_path, model_type):
    from transformers import Phi3Config, Phi3ForCausalLM

    config = Phi3Config(**_DIMS, pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    hf = _save(Phi3ForCausalLM(config), tmp_path / "in")
    sd, logits = _round_trip_logits(tmp_path / "in", model_type, tmp_path / "out")
    qkv = hf.model.layers[0].self_attn.qkv_proj.weight  # rows: q (4 heads * 16), k (2 * 16), v (2 * 16)
    assert torch.equal(sd["layers.0.attn.q_proj.weight"], qkv[:64])
    assert torch.equal(sd["layers.0.attn.k_proj.weight"], qkv[64:96])
    assert torch.equal(sd["layers.0.attn.v_proj.weight"], qkv[96:])
    gate_up = hf.model.layers[0].mlp.gate_up_proj.weight  # rows: gate, then up
    assert torch.equal(sd["layers.0.mlp.w1.weight"], gate_up[:128])
    assert torch.equal(sd["layers.0.mlp.w3.weight"], gate_up[128:])
    torch.testing.assert_close(logits, hf(TOKENS).logits.detach(), atol=1e-5, rtol=1e-5)


def test_phi3_adapter_is_saved_in_tune_format_only(tmp_path):
    from transformers import Phi3Config, Phi3ForCausalLM

    config = Phi3Config(**_DIMS, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    _save(Phi3ForCausalLM(config), tmp_path / "in")
    ckpt = FullModelHFCheckpointer(tmp_path / "in", None, "PHI3_MINI", tmp_path / "out")
    adapter = {"layers.0.attn.q_proj.lora_a.weight": torch.zeros(2, 64)}
    ckpt.save_checkpoint({"adapter": adapter, "adapter_config": {"r": 2, "lora_alpha": 4}}, epoch=0, adapter_only=True)
    assert [p.name for p in (tmp_path / "out" / "epoch_0" / "adapter").iterdir()] == ["adapter_model.pt"]


@pytest.mark.parametrize("value", ["LLAMA3_2", "llama3_2", ModelType.LLAMA3_2])
def test_model_type_accepts_names_values_and_members(value):
    assert resolve_model_type(value) is ModelType.LLAMA3_2


def test_unknown_model_type_lists_every_valid_name():
    with pytest.raises(ValueError) as info:
        resolve_model_type("GPT2")
    assert all(name in str(info.value) for name in ModelType.__members__)


@pytest.mark.parametrize("model_type", ["LLAMA3_VISION", "CLIP_TEXT", "T5_ENCODER"])
def test_model_types_without_a_conversion_fail_naming_the_type(tmp_path, model_type):
    from transformers import LlamaConfig, LlamaForCausalLM

    _save(LlamaForCausalLM(LlamaConfig(**_DIMS)), tmp_path / "in")
    with pytest.raises(ValueError, match=f"model_type {model_type} has no Hugging Face checkpoint conversion"):
        FullModelHFCheckpointer(tmp_path / "in", None, model_type, tmp_path / "out")
