"""Shared parity checks of the Gemma families against ``transformers``' Gemma, Gemma 2 and Gemma 3 models.

A random-init tiny reference (fp32, eager attention, which is what transformers uses for soft-capped
scores) is saved with ``save_pretrained`` and loaded through ``FullModelHFCheckpointer``, the code
under test. The checks: logits, a strict round trip back to transformers, KV-cache decoding past
the sliding window, and LoRA (adapters start as a no-op; merged weights give the unmerged logits).
"""

import contextlib
import copy
import io
import logging
from pathlib import Path
from typing import Callable, Dict, Iterator, List

import torch

from tests.torchtune.models.hf_parity import (
    decode_step_by_step,
    load_through_checkpointer,
    save_through_checkpointer,
    saved_hf_state_dict,
    widen_init,
)
from tests.test_utils.tokenizer_fixtures import tiny_corpus
from torchtune.modules.peft import get_merged_lora_ckpt

# 2 layers (Gemma 3: 3, so that it has local and global layers), dim 64, GQA 4/2 heads of 24
# (not embed_dim // num_heads, as in Gemma 7B and every Gemma 3).
TINY = dict(vocab_size=256, num_layers=2, num_heads=4, head_dim=24, num_kv_heads=2, embed_dim=64,
            intermediate_dim=96, max_seq_len=64, norm_eps=1e-6)
WINDOW = 6
SEQ = 24  # four windows long: decoding runs well past the window


def hf_dims(**extra) -> Dict:
    """transformers config arguments of the tiny model."""
    return {**dict(
        vocab_size=TINY["vocab_size"], hidden_size=TINY["embed_dim"], intermediate_size=TINY["intermediate_dim"],
        num_hidden_layers=TINY["num_layers"], num_attention_heads=TINY["num_heads"], head_dim=TINY["head_dim"],
        num_key_value_heads=TINY["num_kv_heads"], max_position_embeddings=TINY["max_seq_len"],
        rms_norm_eps=TINY["norm_eps"], tie_word_embeddings=True, attn_implementation="eager",
        pad_token_id=0, eos_token_id=1, bos_token_id=2,
    ), **extra}


def save_reference(folder: Path, model_cls, config, seed: int = 0):
    """Random-init reference saved with ``save_pretrained``; norm gains drawn too (Gemma's start at zero)."""
    model = widen_init(model_cls(config), seed=seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.3)
    model.save_pretrained(str(folder))
    return model


def tokens(seed: int, batch: int = 2, seq: int = SEQ) -> torch.Tensor:
    return torch.randint(0, TINY["vocab_size"], (batch, seq), generator=torch.Generator().manual_seed(seed))


@contextlib.contextmanager
def window_warnings() -> Iterator[List[str]]:
    """Collect the messages of the window-mismatch warnings logged while loading a state dict."""
    messages: List[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "attention window" in record.getMessage() or "sliding_window" in record.getMessage():
                messages.append(record.getMessage())

    handler = _Collect(level=logging.WARNING)
    logger = logging.getLogger("torchtune")
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def check_family(ref, folder: Path, model_type: str, build: Callable, out: Path) -> Dict[str, float]:
    """Load, compare logits, save back strictly, decode with the KV cache; returns the largest errors."""
    from transformers import AutoModelForCausalLM

    _, sd = load_through_checkpointer(folder, model_type, out / "load")
    assert not any(k.startswith("output.") for k in sd)  # tied: the table is loaded once
    ours = build().eval()
    with window_warnings() as warned:
        ours.load_state_dict(sd, strict=True)
    assert not warned, warned  # config.json's local/global layers are the model's
    x = tokens(1)
    with torch.no_grad():
        expected = ref(x).logits
        actual = ours(x)
        torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)
        # sqrt(d) is rounded to the hidden dtype before scaling, as transformers does: equal in bf16.
        ours_bf16, ref_bf16 = copy.deepcopy(ours.tok_embeddings), copy.deepcopy(ref.model.embed_tokens)
        assert torch.equal(ours_bf16.to(torch.bfloat16)(x), ref_bf16.to(torch.bfloat16)(x))

        epoch_dir = save_through_checkpointer(folder, model_type, ours.state_dict(), out / "save")
        assert set(saved_hf_state_dict(epoch_dir)) == set(ref.state_dict()) - {"lm_head.weight"}
        back, info = AutoModelForCausalLM.from_pretrained(str(epoch_dir), output_loading_info=True,
                                                          dtype=torch.float32, attn_implementation="eager")
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


def check_lora(build_base: Callable, build_lora: Callable, rank: int, alpha: float) -> float:
    """A LoRA model starts as its base model; with random adapters, merged weights give its logits.

    Returns the largest difference between merged and unmerged logits relative to the largest logit.
    """
    torch.manual_seed(0)
    base = build_base().eval()
    lora = build_lora().eval()
    missing, unexpected = lora.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and missing and all("lora_" in k for k in missing)
    x = tokens(2)
    with torch.no_grad():
        torch.testing.assert_close(lora(x), base(x))
        for name, p in lora.named_parameters():
            if "lora_b" in name:
                p.normal_(0.0, 0.05)
        unmerged = lora(x)
        assert (unmerged - base(x)).abs().max() > 1e-3  # the adapters now matter
        merged_model = build_base().eval()
        merged_model.load_state_dict(get_merged_lora_ckpt(lora.state_dict(), rank=rank, alpha=alpha), strict=True)
        merged = merged_model(x)
        torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=1e-5)
    return ((merged - unmerged).abs().max() / unmerged.abs().max()).item()


def train_gemma_sentencepiece(directory: Path, vocab_size: int = 400) -> Path:
    """A tiny SentencePiece BPE model with Gemma's layout: ``<pad>`` 0, ``<eos>`` 1, ``<bos>`` 2,
    ``<unk>`` 3, ``<mask>`` and the turn markers as user-defined pieces, byte fallback, no dummy prefix.

    Returns:
        Path: ``directory / "tokenizer.model"``.
    """
    import sentencepiece as spm

    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(tiny_corpus()), model_writer=proto, vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, character_coverage=1.0, normalization_rule_name="identity",
        remove_extra_whitespaces=False, add_dummy_prefix=False, split_digits=True,
        pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>",
        unk_piece="<unk>", user_defined_symbols=["<mask>", "<start_of_turn>", "<end_of_turn>"],
        hard_vocab_limit=False, num_threads=1, minloglevel=2,
    )
    path = Path(directory) / "tokenizer.model"
    path.write_bytes(proto.getvalue())
    return path
