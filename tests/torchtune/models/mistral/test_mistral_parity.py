"""Mistral against `transformers`' MistralForCausalLM, with a sliding window shorter than the sequence."""

import logging

import pytest
import torch

from tests.torchtune.models.hf_parity import (
    decode_step_by_step,
    load_through_checkpointer,
    save_through_checkpointer,
    saved_hf_state_dict,
    widen_init,
)
from torchtune.models.mistral import lora_mistral, mistral

DIMS = dict(vocab_size=128, num_layers=2, num_heads=4, num_kv_heads=2, embed_dim=64, intermediate_dim=96,
            max_seq_len=64, norm_eps=1e-5, rope_base=10_000)
WINDOW = 6
SEQ = 24  # four windows long


def _hf_config(sliding_window):
    from transformers import MistralConfig

    return MistralConfig(
        vocab_size=DIMS["vocab_size"], hidden_size=DIMS["embed_dim"], intermediate_size=DIMS["intermediate_dim"],
        num_hidden_layers=DIMS["num_layers"], num_attention_heads=DIMS["num_heads"],
        num_key_value_heads=DIMS["num_kv_heads"], max_position_embeddings=DIMS["max_seq_len"],
        sliding_window=sliding_window, rms_norm_eps=DIMS["norm_eps"], rope_theta=float(DIMS["rope_base"]),
        tie_word_embeddings=False, attn_implementation="eager",
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A random-init MistralForCausalLM (window 6) saved with save_pretrained."""
    from transformers import MistralForCausalLM

    folder = tmp_path_factory.mktemp("mistral_hf")
    hf = widen_init(MistralForCausalLM(_hf_config(WINDOW)), seed=0)
    hf.save_pretrained(str(folder))
    return hf, folder


@pytest.fixture(scope="module")
def loaded(saved, tmp_path_factory):
    hf, folder = saved
    ckpt, sd = load_through_checkpointer(folder, "MISTRAL", tmp_path_factory.mktemp("mistral_out"))
    ours = mistral(**DIMS, sliding_window=WINDOW).eval()
    ours.load_state_dict(sd, strict=True)
    return hf, ckpt, sd, ours


def _tokens(seed, batch=2, seq=SEQ):
    return torch.randint(0, DIMS["vocab_size"], (batch, seq), generator=torch.Generator().manual_seed(seed))


def test_logits_equal_transformers_past_the_window(loaded):
    hf, _, sd, ours = loaded
    tokens = _tokens(1)
    with torch.no_grad():
        expected, actual = hf(tokens).logits, ours(tokens)
        torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)
        # The sequence is long enough for the window to matter.
        wide = mistral(**DIMS).eval()
        wide.load_state_dict(sd)
        assert (wide(tokens)[:, -1] - expected[:, -1]).abs().max() > 1e-3


def test_saved_checkpoint_loads_back_in_transformers_strict(saved, loaded, tmp_path):
    from transformers import MistralForCausalLM

    hf, _, _, ours = loaded
    epoch_dir = save_through_checkpointer(saved[1], "MISTRAL", ours.state_dict(), tmp_path)
    fresh = MistralForCausalLM(_hf_config(WINDOW)).eval()
    fresh.load_state_dict(saved_hf_state_dict(epoch_dir), strict=True)
    reloaded = MistralForCausalLM.from_pretrained(str(epoch_dir)).eval()
    assert reloaded.config.sliding_window == WINDOW
    tokens = _tokens(2)
    with torch.no_grad():
        torch.testing.assert_close(fresh(tokens).logits, hf(tokens).logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(reloaded(tokens).logits, hf(tokens).logits, atol=1e-5, rtol=1e-5)


def test_kv_cache_decoding_past_the_window_equals_the_full_forward(loaded):
    _, _, _, ours = loaded
    tokens = _tokens(3, seq=20)
    with torch.no_grad():
        full = ours(tokens)
        stepwise = decode_step_by_step(ours, tokens, prefill=4)
    torch.testing.assert_close(stepwise, full, atol=1e-5, rtol=1e-5)


def test_lora_mistral_starts_as_the_base_model(loaded):
    _, _, sd, ours = loaded
    lora = lora_mistral(["q_proj", "v_proj", "output_proj"], apply_lora_to_mlp=True, apply_lora_to_output=True,
                        **DIMS, lora_rank=4, lora_alpha=8, sliding_window=WINDOW).eval()
    missing, unexpected = lora.load_state_dict(sd, strict=False)
    assert not unexpected and missing and all("lora_" in k for k in missing)
    assert all(layer.attn.sliding_window == WINDOW for layer in lora.layers)
    tokens = _tokens(4)
    with torch.no_grad():
        torch.testing.assert_close(lora(tokens), ours(tokens))


@pytest.fixture
def torchtune_log(caplog):
    logger = logging.getLogger("torchtune")
    logger.propagate = True  # let caplog see the package logger
    yield caplog
    logger.propagate = False


@pytest.mark.parametrize("hf_window, our_window", [(WINDOW, None), (None, WINDOW), (WINDOW, 2 * WINDOW)])
def test_window_mismatch_with_config_json_warns_naming_the_key(tmp_path, torchtune_log, hf_window, our_window):
    from transformers import MistralForCausalLM

    widen_init(MistralForCausalLM(_hf_config(hf_window))).save_pretrained(str(tmp_path / "hf"))
    _, sd = load_through_checkpointer(tmp_path / "hf", "MISTRAL", tmp_path / "out")
    with torchtune_log.at_level(logging.WARNING, logger="torchtune"):
        mistral(**DIMS, sliding_window=our_window).load_state_dict(sd)
    warnings = [r.getMessage() for r in torchtune_log.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "sliding_window" in warnings[0], warnings
    assert f"sliding_window={hf_window}" in warnings[0]


@pytest.mark.parametrize("window", [WINDOW, None])
def test_matching_window_loads_without_warning(tmp_path, torchtune_log, window):
    from transformers import MistralForCausalLM

    widen_init(MistralForCausalLM(_hf_config(window))).save_pretrained(str(tmp_path / "hf"))
    _, sd = load_through_checkpointer(tmp_path / "hf", "MISTRAL", tmp_path / "out")
    with torchtune_log.at_level(logging.WARNING, logger="torchtune"):
        mistral(**DIMS, sliding_window=window).load_state_dict(sd)
    assert not [r for r in torchtune_log.records if "sliding_window" in r.getMessage()]
