"""Shared parity checks of the Qwen families against ``transformers``' Qwen2 / Qwen3 models.

A random-init tiny reference (tied or untied) is saved with ``save_pretrained`` and loaded through
``FullModelHFCheckpointer``, the code under test; every check compares with the reference's logits.
"""

from pathlib import Path
from typing import Callable, Dict

import torch

from tests.torchtune.models.hf_parity import decode_step_by_step, load_through_checkpointer, widen_init

# 2 layers, dim 64, GQA 4/2 heads; head_dim 16 (Qwen3 below uses an explicit, wider head_dim).
TINY = dict(vocab_size=256, num_layers=2, num_heads=4, num_kv_heads=2, embed_dim=64, intermediate_dim=96,
            max_seq_len=64, norm_eps=1e-6, rope_base=1_000_000.0)
SEQ = 24


def hf_config(kind: str, tie: bool, **extra):
    """A transformers ``Qwen2Config`` / ``Qwen3Config`` with the tiny dimensions."""
    from transformers import Qwen2Config, Qwen3Config

    cls = {"qwen2": Qwen2Config, "qwen3": Qwen3Config}[kind]
    return cls(
        vocab_size=TINY["vocab_size"], hidden_size=TINY["embed_dim"], intermediate_size=TINY["intermediate_dim"],
        num_hidden_layers=TINY["num_layers"], num_attention_heads=TINY["num_heads"],
        num_key_value_heads=TINY["num_kv_heads"], max_position_embeddings=TINY["max_seq_len"],
        rms_norm_eps=TINY["norm_eps"], rope_theta=TINY["rope_base"], tie_word_embeddings=tie,
        use_sliding_window=False, attn_implementation="eager", **extra,
    )


def save_reference(folder: Path, kind: str, tie: bool, seed: int = 0, **extra):
    """Random-init reference (fp32, eval) saved with ``save_pretrained``; biases widened too, so they matter."""
    from transformers import Qwen2ForCausalLM, Qwen3ForCausalLM

    cls = {"qwen2": Qwen2ForCausalLM, "qwen3": Qwen3ForCausalLM}[kind]
    model = widen_init(cls(hf_config(kind, tie, **extra)), seed=seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:  # biases start at zero and norms at one: draw them so both are exercised
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(str(folder))
    return model


def tokens(seed: int, batch: int = 2, seq: int = SEQ) -> torch.Tensor:
    return torch.randint(0, TINY["vocab_size"], (batch, seq), generator=torch.Generator().manual_seed(seed))


def check_family(ref, folder: Path, model_type: str, build: Callable, out: Path) -> Dict[str, float]:
    """Load, compare logits, save back strictly, decode with the KV cache; returns the largest errors."""
    from transformers import AutoModelForCausalLM

    _, sd = load_through_checkpointer(folder, model_type, out / "load")
    ours = build().eval()
    ours.load_state_dict(sd, strict=True)
    x = tokens(1)
    with torch.no_grad():
        expected = ref(x).logits
        actual = ours(x)
        torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)

        ours_ckpt_out = out / "save"
        from tests.torchtune.models.hf_parity import save_through_checkpointer

        epoch_dir = save_through_checkpointer(folder, model_type, ours.state_dict(), ours_ckpt_out)
        back, info = AutoModelForCausalLM.from_pretrained(str(epoch_dir), output_loading_info=True,
                                                          dtype=torch.float32)
        problems = {k: v for k, v in info.items() if v}
        assert not problems, problems  # strict: nothing missing, unexpected or mis-shaped
        roundtrip = back.eval()(x).logits
        torch.testing.assert_close(roundtrip, expected, atol=1e-5, rtol=1e-5)

        stepwise = decode_step_by_step(ours, x, prefill=5)
        torch.testing.assert_close(stepwise, actual, atol=1e-5, rtol=1e-5)
    return {
        "logits": (actual - expected).abs().max().item(),
        "roundtrip": (roundtrip - expected).abs().max().item(),
        "kv_cache": (stepwise - actual).abs().max().item(),
    }
