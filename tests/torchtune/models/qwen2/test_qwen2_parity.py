"""Qwen2 against `transformers`' Qwen2ForCausalLM (tied and untied): logits, strict round trip, KV cache."""

import json

import pytest
import torch

from tests.torchtune.models.hf_parity import load_through_checkpointer
from tests.torchtune.models.qwen2.qwen_reference import TINY, check_family, save_reference, tokens
from torchtune.models.qwen2 import Qwen2RotaryPositionalEmbeddings, lora_qwen2, qwen2


@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
def test_qwen2_matches_transformers(tmp_path, tie):
    ref = save_reference(tmp_path / "hf", "qwen2", tie)
    errors = check_family(ref, tmp_path / "hf", "QWEN2", lambda: qwen2(**TINY, tie_word_embeddings=tie), tmp_path)
    assert max(errors.values()) <= 1e-5, errors


def test_tied_checkpoint_without_lm_head_loads(tmp_path):
    """transformers writes no lm_head.weight for a tied model; ours has none to fill either."""
    from safetensors.torch import load_file

    save_reference(tmp_path / "hf", "qwen2", tie=True)
    assert "lm_head.weight" not in load_file(str(tmp_path / "hf" / "model.safetensors"))
    _, sd = load_through_checkpointer(tmp_path / "hf", "QWEN2", tmp_path / "out")
    model = qwen2(**TINY, tie_word_embeddings=True)
    model.load_state_dict(sd, strict=True)
    assert model.output.weight is model.tok_embeddings.weight


def test_use_sliding_window_is_refused_naming_the_key(tmp_path):
    save_reference(tmp_path / "hf", "qwen2", tie=False)
    config_path = tmp_path / "hf" / "config.json"
    config = json.loads(config_path.read_text())
    config.update(use_sliding_window=True, sliding_window=8, max_window_layers=1)
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="use_sliding_window"):
        load_through_checkpointer(tmp_path / "hf", "QWEN2", tmp_path / "out")


def test_lora_qwen2_starts_as_the_base_model(tmp_path):
    save_reference(tmp_path / "hf", "qwen2", tie=False)
    _, sd = load_through_checkpointer(tmp_path / "hf", "QWEN2", tmp_path / "out")
    base = qwen2(**TINY).eval()
    base.load_state_dict(sd, strict=True)
    lora = lora_qwen2(["q_proj", "k_proj", "v_proj", "output_proj"], apply_lora_to_mlp=True,
                      apply_lora_to_output=True, **TINY, lora_rank=4, lora_alpha=8).eval()
    missing, unexpected = lora.load_state_dict(sd, strict=False)
    assert not unexpected and missing and all("lora_" in k for k in missing)
    x = tokens(2)
    with torch.no_grad():
        torch.testing.assert_close(lora(x), base(x))


def test_lora_on_tied_output_raises():
    with pytest.raises(ValueError, match="apply_lora_to_output"):
        lora_qwen2(["q_proj"], apply_lora_to_output=True, **TINY, tie_word_embeddings=True, lora_rank=4, lora_alpha=8)


def test_rope_rotates_halves_like_transformers():
    """Independent of the model: our RoPE equals transformers' apply_rotary_pos_emb at shifted positions."""
    from transformers.models.qwen2.modeling_qwen2 import apply_rotary_pos_emb, rotate_half  # noqa: F401

    head_dim, base = 16, 1e6
    rope = Qwen2RotaryPositionalEmbeddings(head_dim, max_seq_len=32, base=base)
    x = torch.randn(2, 7, 3, head_dim, generator=torch.Generator().manual_seed(0))  # [b, s, n_h, h_d]
    pos = torch.arange(7) + 5
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2).float() / head_dim)
    angles = torch.cat([torch.outer(pos.float(), inv_freq)] * 2, dim=-1)  # [s, h_d]
    q = x.transpose(1, 2)  # transformers' [b, n_h, s, h_d]
    expected, _ = apply_rotary_pos_emb(q, q, angles.cos()[None], angles.sin()[None])
    actual = rope(x, input_pos=pos.expand(2, 7))
    torch.testing.assert_close(actual, expected.transpose(1, 2), atol=1e-6, rtol=1e-6)
