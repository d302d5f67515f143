"""Code Llama 2: published sizes, and parity with `transformers`' LlamaForCausalLM at Code Llama's RoPE base."""

import pytest
import torch

import torchtune.models.code_llama2._model_builders as builders
from tests.torchtune.models.hf_parity import (
    decode_step_by_step,
    load_through_checkpointer,
    save_through_checkpointer,
    saved_hf_state_dict,
    widen_init,
)
from torchtune.models.code_llama2 import (
    code_llama2_13b,
    code_llama2_70b,
    code_llama2_7b,
    lora_code_llama2_13b,
    lora_code_llama2_70b,
    lora_code_llama2_7b,
    qlora_code_llama2_13b,
    qlora_code_llama2_70b,
    qlora_code_llama2_7b,
)
from torchtune.models.llama2 import llama2

# Parameter counts of the published checkpoints meta-llama/CodeLlama-{7,13,70}b-hf (numbers given in
# issue 14; they are the tensor sizes each published config.json implies, Llama 2's plus 16 tokens).
PUBLISHED = {"7b": 6_738_546_688, "13b": 13_016_028_160, "70b": 68_976_910_336}
SIZES = [
    ("7b", code_llama2_7b, lora_code_llama2_7b, qlora_code_llama2_7b, "lora_code_llama2_7b"),
    ("13b", code_llama2_13b, lora_code_llama2_13b, qlora_code_llama2_13b, "lora_code_llama2_13b"),
    ("70b", code_llama2_70b, lora_code_llama2_70b, qlora_code_llama2_70b, "lora_code_llama2_70b"),
]


def _count(model, skip_adapters=False):
    return sum(p.numel() for n, p in model.named_parameters() if not (skip_adapters and "lora_" in n))


@pytest.mark.parametrize("size, base, lora, qlora, lora_name", SIZES, ids=[s[0] for s in SIZES])
def test_published_parameter_counts(size, base, lora, qlora, lora_name, monkeypatch):
    expected = PUBLISHED[size]
    with torch.device("meta"):
        dense = base()
        adapted = lora(["q_proj", "v_proj"], apply_lora_to_mlp=True, lora_rank=8)
    assert abs(_count(dense) - expected) / expected < 1e-3, _count(dense)
    assert _count(adapted, skip_adapters=True) == _count(dense)
    assert dense.max_seq_len == 16_384 and dense.tok_embeddings.num_embeddings == 32_016
    assert dense.layers[0].attn.pos_embeddings.base == 1_000_000.0
    # QLoRA is the LoRA builder with NF4 base weights (NF4 quantization of 7B+ weights is too slow for
    # a unit test, so check the call instead of building it).
    calls = []
    monkeypatch.setattr(builders, lora_name, lambda *a: calls.append(a))
    qlora(["q_proj"], True, False, 4, 8.0, 0.0, False)
    assert calls == [(["q_proj"], True, False, 4, 8.0, 0.0, False, True)]


DIMS = dict(vocab_size=272, num_layers=2, num_heads=4, num_kv_heads=4, embed_dim=64, intermediate_dim=128,
            max_seq_len=128, norm_eps=1e-5, rope_base=1_000_000.0)


def _hf_model():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=DIMS["vocab_size"], hidden_size=DIMS["embed_dim"], intermediate_size=DIMS["intermediate_dim"],
        num_hidden_layers=DIMS["num_layers"], num_attention_heads=DIMS["num_heads"],
        num_key_value_heads=DIMS["num_kv_heads"], max_position_embeddings=DIMS["max_seq_len"],
        rms_norm_eps=DIMS["norm_eps"], rope_theta=DIMS["rope_base"], tie_word_embeddings=False,
    )
    return widen_init(LlamaForCausalLM(config), seed=0)


def test_hf_checkpoint_round_trip_logits_and_kv_cache(tmp_path):
    hf = _hf_model()
    hf.save_pretrained(str(tmp_path / "hf"))
    _, sd = load_through_checkpointer(tmp_path / "hf", "LLAMA2", tmp_path / "out")
    ours = llama2(**DIMS).eval()
    ours.load_state_dict(sd, strict=True)
    tokens = torch.randint(0, DIMS["vocab_size"], (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf(tokens).logits
        torch.testing.assert_close(ours(tokens), expected, atol=1e-5, rtol=1e-5)
        # Code Llama's RoPE base matters: Llama 2's 10000 gives other logits.
        llama_base = llama2(**dict(DIMS, rope_base=10_000.0)).eval()
        llama_base.load_state_dict(sd)
        assert (llama_base(tokens) - expected).abs().max() > 1e-3
        torch.testing.assert_close(decode_step_by_step(ours, tokens, prefill=8), expected, atol=1e-5, rtol=1e-5)

    epoch_dir = save_through_checkpointer(tmp_path / "hf", "LLAMA2", ours.state_dict(), tmp_path / "saved")
    fresh = _hf_model()
    torch.nn.init.zeros_(fresh.lm_head.weight)
    fresh.load_state_dict(saved_hf_state_dict(epoch_dir), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(fresh(tokens).logits, expected, atol=1e-5, rtol=1e-5)
