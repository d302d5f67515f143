"""The toy family of ``toy_family.py`` (under 60 lines, no copied assembly) against transformers."""

from pathlib import Path

import pytest
import torch

from tests.torchtune.models.toy_family import lora_toy, toy, toy_hf_to_tune

DIMS = dict(vocab_size=128, num_layers=2, num_heads=4, num_kv_heads=2, embed_dim=64, intermediate_dim=96,
            max_seq_len=64, sliding_window=5, norm_eps=1e-5, rope_base=10_000.0)


@pytest.fixture(scope="module")
def hf_and_ours():
    from transformers import MistralConfig, MistralForCausalLM

    config = MistralConfig(
        vocab_size=DIMS["vocab_size"], hidden_size=DIMS["embed_dim"], intermediate_size=DIMS["intermediate_dim"],
        num_hidden_layers=DIMS["num_layers"], num_attention_heads=DIMS["num_heads"],
        num_key_value_heads=DIMS["num_kv_heads"], max_position_embeddings=DIMS["max_seq_len"],
        sliding_window=DIMS["sliding_window"], rms_norm_eps=DIMS["norm_eps"], rope_theta=DIMS["rope_base"],
        tie_word_embeddings=True, attn_implementation="eager",
    )
    torch.manual_seed(0)
    hf = MistralForCausalLM(config).eval()
    with torch.no_grad():
        for p in hf.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.08)
    ours = toy(**DIMS).eval()
    sd = toy_hf_to_tune(hf.state_dict(), DIMS["num_heads"], DIMS["num_kv_heads"], DIMS["embed_dim"])
    ours.load_state_dict(sd, strict=True)
    return hf, ours, sd


def test_the_toy_family_is_at_most_60_lines():
    source = Path(__file__).with_name("toy_family.py").read_text().splitlines()
    assert len(source) <= 60, len(source)


def test_logits_equal_transformers_past_the_window(hf_and_ours):
    hf, ours, _ = hf_and_ours
    tokens = torch.randint(0, DIMS["vocab_size"], (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ours(tokens), hf(tokens).logits, atol=1e-5, rtol=1e-5)
        # The window matters at this length: without it the logits differ.
        wide = toy(**dict(DIMS, sliding_window=64)).eval()
        wide.load_state_dict(hf_and_ours[2])
        assert (wide(tokens)[:, -1] - ours(tokens)[:, -1]).abs().max() > 1e-3


def test_kv_cache_decoding_past_the_window_equals_the_full_forward(hf_and_ours):
    _, ours, _ = hf_and_ours
    tokens = torch.randint(0, DIMS["vocab_size"], (2, 20), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = ours(tokens)
        ours.setup_caches(batch_size=2, dtype=torch.float32, decoder_max_seq_len=32)
        steps = [ours(tokens[:, :6])] + [ours(tokens[:, i:i + 1]) for i in range(6, 20)]
        ours.reset_caches()
    for layer in ours.layers:
        layer.attn.kv_cache, layer.attn.cache_enabled = None, False
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_lora_and_qlora_variants_come_from_the_same_assembly(hf_and_ours):
    _, ours, sd = hf_and_ours
    dims = dict(DIMS)
    lora = lora_toy(["q_proj", "v_proj"], apply_lora_to_mlp=True, lora_rank=4, lora_alpha=8, **dims).eval()
    missing, unexpected = lora.load_state_dict(sd, strict=False)
    assert not unexpected and all("lora_" in k for k in missing)
    tokens = torch.randint(0, DIMS["vocab_size"], (1, 16))
    with torch.no_grad():
        torch.testing.assert_close(lora(tokens), ours(tokens))  # lora_b starts at zero
    assert lora.layers[0].attn.sliding_window == DIMS["sliding_window"]
    assert lora.output.weight is lora.tok_embeddings.weight
    from torchtune.modules.low_precision import is_nf4

    qlora = lora_toy(["q_proj"], lora_rank=4, lora_alpha=8, quantize_base=True, **dims)
    assert is_nf4(qlora.layers[0].attn.q_proj.weight) and is_nf4(qlora.layers[1].mlp.w2.weight)
    with pytest.raises(ValueError, match="tied embeddings"):
        from torchtune.modules import build_decoder
        from torchtune.modules.peft import get_lora_linear_builder

        build_decoder(get_lora_linear_builder(["q_proj"], apply_lora_to_output=True, lora_rank=2, lora_alpha=4),
                      **DIMS, tie_word_embeddings=True)
